from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.data import JSON_DUMPS
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0002_error_counts_and_notifications')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ApiCallLog',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('provider', fields.CharField(db_index=True, max_length=64)),
                ('model', fields.CharField(null=True, max_length=200)),
                ('method', fields.CharField(max_length=8)),
                ('url', fields.CharField(max_length=500)),
                ('generation_id', fields.UUIDField(null=True, db_index=True)),
                ('request_id', fields.CharField(null=True, max_length=64)),
                ('status_code', fields.IntField(null=True)),
                ('duration_ms', fields.IntField()),
                ('ok', fields.BooleanField()),
                ('error', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'api_call_logs', 'app': 'models', 'indexes': [Index(fields=['provider', 'created_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='Generation',
            name='provider_job',
            field=fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads),
        ),
        ops.AddField(
            model_name='Generation',
            name='provider_job_id',
            field=fields.CharField(null=True, db_index=True, max_length=255),
        ),
    ]
