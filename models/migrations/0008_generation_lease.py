from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

# Who is responsible for a live generation's current step, and until when (epoch
# milliseconds): the worker running it (renewed while it runs), or the message sent for it (a
# re-send by the sweeper, a later poll). Once it lapses the sweeper sends the step again and
# another worker takes it over (services/generations/leases.py). Null: no lease (rows of older versions).
class Migration(migrations.Migration):
    dependencies = [('models', '0007_workflow_phase')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Generation',
            name='lease_expires_ms',
            field=fields.BigIntField(null=True),
        ),
    ]
