from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

# creditBalanceChanged's version becomes the account's own sequence (bumped by every move of
# the account) instead of the id of its newest ledger entry. The column has a database default
# so it can be added to a table that has rows; an account that exists already continues from
# its old version, so no client that remembers one sees the next go backwards.
START_AT_THE_OLD_VERSION = """
UPDATE credit_accounts SET version = COALESCE(
    (SELECT MAX(l.id) FROM ledger_entries l WHERE l.user_id = credit_accounts.user_id), 0)
"""


class Migration(migrations.Migration):
    dependencies = [('models', '0005_security_api_keys_priority')]

    initial = False

    operations = [
        ops.AddField(
            model_name='CreditAccount',
            name='version',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.RunSQL(START_AT_THE_OLD_VERSION, reverse_sql=""),
    ]
