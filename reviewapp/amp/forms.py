"""Forms of the crew pages. The kickoff form is built from the crew's ``GET /inputs``."""

from __future__ import annotations

import json

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, Length, Optional

MAX_INPUTS = 50
MAX_INPUT_NAME = 200
MAX_INPUT_VALUE = 20_000


class CrewForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=64)],
                       description="Lowercase letters, digits, - and _; it becomes part of the webhook URLs.")
    base_url = StringField("Base URL", validators=[DataRequired(), Length(max=500)],
                           description="The deployment's URL, e.g. https://my-crew.crewai.com")
    token = PasswordField("Bearer token", validators=[DataRequired(), Length(max=4096)])
    submit = SubmitField("Add crew")


class EditCrewForm(FlaskForm):
    base_url = StringField("Base URL", validators=[Optional(), Length(max=500)])
    token = PasswordField("New Bearer token (leave empty to keep the current one)",
                          validators=[Optional(), Length(max=4096)])
    submit = SubmitField("Save")


class FixTokenForm(FlaskForm):
    token = PasswordField("New Bearer token", validators=[DataRequired(), Length(max=4096)])
    submit = SubmitField("Replace the token")


class RemoveCrewForm(FlaskForm):
    delete_history = BooleanField("Also delete its executions and review history")
    submit = SubmitField("Remove crew")


class KickoffBase(FlaskForm):
    input_names = HiddenField()
    submit = SubmitField("Kick off")

    def input_fields(self) -> list:
        return [self[f"in_{i}"] for i in range(len(self.names))]

    def values(self) -> dict[str, str]:
        return {name: (field.data or "").strip() for name, field in zip(self.names, self.input_fields(), strict=True)}

    def add_missing(self, missing: list[str]) -> None:
        for name, field in zip(self.names, self.input_fields(), strict=True):
            if name in missing:
                field.errors = [*field.errors, "AMP says this input is required."]

    names: list[str] = []


def parse_input_names(raw: str | None) -> list[str] | None:
    """The input names carried by the form's hidden field; None when malformed."""
    try:
        names = json.loads(raw or "")
    except ValueError:
        return None
    if not isinstance(names, list) or len(names) > MAX_INPUTS:
        return None
    if not all(isinstance(n, str) and 0 < len(n) <= MAX_INPUT_NAME for n in names):
        return None
    return names


def kickoff_form(names: list[str], **kwargs) -> KickoffBase:
    """A form with one field per input, labelled with the input's name."""
    attrs = {
        f"in_{i}": StringField(
            name, validators=[DataRequired(message=f"Enter a value for {name}."), Length(max=MAX_INPUT_VALUE)]
        )
        for i, name in enumerate(names)
    }
    form_class = type("KickoffForm", (KickoffBase,), attrs)
    form = form_class(**kwargs)
    form.names = list(names)
    if not form.input_names.data:
        form.input_names.data = json.dumps(names)
    return form
