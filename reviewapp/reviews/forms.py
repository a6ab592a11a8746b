"""Forms of the review loop (Flask-WTF: every POST carries a CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, SubmitField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from .services import FEEDBACK_MAX_CHARS


class DecisionForm(FlaskForm):
    feedback = TextAreaField(
        "Feedback",
        validators=[Length(max=FEEDBACK_MAX_CHARS, message=f"At most {FEEDBACK_MAX_CHARS} characters.")],
    )
    reason = SelectField("Reason for a revision (optional)", validators=[Optional()], choices=[])
    approve = SubmitField("Approve")
    revise = SubmitField("Request revision")

    def set_reasons(self, reasons: list[str]) -> DecisionForm:
        self.reason.choices = [SelectChoice("", "— none —")] + [SelectChoice(code) for code in reasons]
        return self

    def validate(self, extra_validators=None) -> bool:
        if not super().validate(extra_validators):
            return False
        if bool(self.approve.data) == bool(self.revise.data):
            self.feedback.errors = [*self.feedback.errors, "Press either Approve or Request revision."]
            return False
        return True

    @property
    def is_approve(self) -> bool:
        return bool(self.approve.data)
