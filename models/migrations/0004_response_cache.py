from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_provider_jobs_and_call_log')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Generation',
            name='cache_key',
            field=fields.CharField(null=True, db_index=True, max_length=64),
        ),
    ]
