from tortoise import migrations
from tortoise.migrations import operations as ops
from models.error_event import ErrorCategory, Severity
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ErrorHourlyCount',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hour', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('fingerprint', fields.CharField(max_length=64)),
                ('severity', fields.CharEnumField(description='CRITICAL: CRITICAL\nERROR: ERROR\nWARNING: WARNING\nINFO: INFO', enum_type=Severity, max_length=16)),
                ('category', fields.CharEnumField(description='AUTHENTICATION: AUTHENTICATION\nGENERATION: GENERATION\nPAYMENT: PAYMENT\nAPI: API\nDATABASE: DATABASE\nWEBHOOK: WEBHOOK\nVIDEO: VIDEO\nSTORYBOARD: STORYBOARD\nWORKFLOW: WORKFLOW\nSYSTEM: SYSTEM\nUSER_ACTION: USER_ACTION', enum_type=ErrorCategory, max_length=24)),
                ('count', fields.IntField(default=0)),
            ],
            options={'table': 'error_hourly_counts', 'app': 'models', 'unique_together': (('hour', 'fingerprint', 'severity'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GenerationHourlyCount',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('hour', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('model', fields.CharField(max_length=120)),
                ('completed', fields.IntField(default=0)),
                ('failed', fields.IntField(default=0)),
                ('canceled', fields.IntField(default=0)),
            ],
            options={'table': 'generation_hourly_counts', 'app': 'models', 'unique_together': (('hour', 'model'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Notification',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=48)),
                ('severity', fields.CharEnumField(description='CRITICAL: CRITICAL\nERROR: ERROR\nWARNING: WARNING\nINFO: INFO', enum_type=Severity, max_length=16)),
                ('title', fields.CharField(max_length=200)),
                ('message', fields.TextField(unique=False)),
                ('generation', fields.ForeignKeyField('models.Generation', source_field='generation_id', null=True, db_constraint=True, to_field='id', related_name='notifications', on_delete=OnDelete.SET_NULL)),
                ('action_label', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'notifications', 'app': 'models', 'indexes': [Index(fields=['user_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='CreditAccount',
            options={'table': 'credit_accounts', 'app': 'models', 'pk_attr': 'user_id'},
        ),
        ops.AddField(
            model_name='ErrorEvent',
            name='version',
            field=fields.IntField(default=1),
        ),
        ops.AddIndex(
            model_name='ErrorEvent',
            index=Index(fields=['status', 'last_seen']),
        ),
    ]
