from flask_wtf import FlaskForm
from wtforms import PasswordField, SelectField, StringField, SubmitField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from ..auth.passwords import LENGTH_MESSAGE, MAX_LENGTH, MIN_LENGTH
from ..models import Role

ROLE_CHOICES = [SelectChoice(r.value, r.label) for r in Role]


class CreateUserForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(min=2, max=64)])
    role = SelectField("Role", choices=ROLE_CHOICES, default=Role.REVIEWER.value)
    password = PasswordField(
        "Initial password (leave empty to generate a one-time password)",
        validators=[Optional(), Length(min=MIN_LENGTH, max=MAX_LENGTH, message=LENGTH_MESSAGE)],
    )
    submit = SubmitField("Create account")


class RoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)
    submit = SubmitField("Change role")


class ResetPasswordForm(FlaskForm):
    temporary = PasswordField(
        "Temporary password (leave empty to generate one)",
        validators=[Optional(), Length(min=MIN_LENGTH, max=MAX_LENGTH, message=LENGTH_MESSAGE)],
    )
    submit = SubmitField("Reset password")
