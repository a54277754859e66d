from tortoise import migrations
from tortoise.migrations import operations as ops
from models.credits import LedgerKind
from models.error_event import ErrorCategory, ErrorStatus, Severity
from models.generation import GenerationKind, GenerationStatus, HoldState
from models.user import Role
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='ErrorEvent',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('fingerprint', fields.CharField(unique=True, max_length=64)),
                ('severity', fields.CharEnumField(description='CRITICAL: CRITICAL\nERROR: ERROR\nWARNING: WARNING\nINFO: INFO', enum_type=Severity, max_length=16)),
                ('category', fields.CharEnumField(description='AUTHENTICATION: AUTHENTICATION\nGENERATION: GENERATION\nPAYMENT: PAYMENT\nAPI: API\nDATABASE: DATABASE\nWEBHOOK: WEBHOOK\nVIDEO: VIDEO\nSTORYBOARD: STORYBOARD\nWORKFLOW: WORKFLOW\nSYSTEM: SYSTEM\nUSER_ACTION: USER_ACTION', enum_type=ErrorCategory, max_length=24)),
                ('message', fields.TextField(unique=False)),
                ('error_code', fields.CharField(null=True, max_length=64)),
                ('user_facing', fields.BooleanField(default=False)),
                ('user_message', fields.TextField(null=True, unique=False)),
                ('status', fields.CharEnumField(default=ErrorStatus.UNRESOLVED, description='UNRESOLVED: UNRESOLVED\nRESOLVED: RESOLVED\nIGNORED: IGNORED', enum_type=ErrorStatus, max_length=16)),
                ('regressed', fields.BooleanField(default=False)),
                ('count', fields.IntField(default=1)),
                ('first_seen', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('last_seen', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('resolved_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('resolution_notes', fields.TextField(null=True, unique=False)),
                ('last_occurrence', fields.JSONField(null=True, encoder=JSON_DUMPS, decoder=loads)),
            ],
            options={'table': 'error_events', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('email', fields.CharField(unique=True, max_length=254)),
                ('password_hash', fields.CharField(max_length=255)),
                ('role', fields.CharEnumField(default=Role.USER, description='USER: USER\nADMIN: ADMIN', enum_type=Role, max_length=16)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'users', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CreditAccount',
            fields=[
                ('user', fields.OneToOneField('models.User', source_field='user_id', primary_key=True, db_index=True, db_constraint=True, to_field='id', related_name='account', on_delete=OnDelete.CASCADE)),
                ('balance', fields.IntField(default=0)),
                ('reserved', fields.IntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'credit_accounts', 'app': 'models', 'pk_attr': 'user_id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Generation',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_constraint=True, to_field='id', related_name='generations', on_delete=OnDelete.CASCADE)),
                ('parent', fields.ForeignKeyField('models.Generation', source_field='parent_id', null=True, db_index=True, db_constraint=True, to_field='id', related_name='children', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharEnumField(description='IMAGE: IMAGE\nVIDEO: VIDEO\nTEXT: TEXT\nMULTI_VIEW: MULTI_VIEW', enum_type=GenerationKind, max_length=16)),
                ('status', fields.CharEnumField(default=GenerationStatus.QUEUED, description='QUEUED: QUEUED\nPROCESSING: PROCESSING\nAWAITING_APPROVAL: AWAITING_APPROVAL\nCOMPLETED: COMPLETED\nFAILED: FAILED\nCANCELED: CANCELED', enum_type=GenerationStatus, max_length=24)),
                ('progress', fields.FloatField(default=0.0)),
                ('stage', fields.CharField(null=True, max_length=120)),
                ('model', fields.CharField(max_length=120)),
                ('preset', fields.CharField(null=True, max_length=120)),
                ('provider', fields.CharField(null=True, max_length=64)),
                ('prompt', fields.TextField(unique=False)),
                ('negative_prompt', fields.TextField(null=True, unique=False)),
                ('params', fields.JSONField(default=dict, encoder=JSON_DUMPS, decoder=loads)),
                ('cost', fields.IntField()),
                ('hold', fields.CharEnumField(null=True, description='HELD: HELD\nCAPTURED: CAPTURED\nRELEASED: RELEASED', enum_type=HoldState, max_length=16)),
                ('attempts', fields.IntField(default=1)),
                ('error_code', fields.CharField(null=True, max_length=64)),
                ('error_message', fields.TextField(null=True, unique=False)),
                ('version', fields.IntField(default=1)),
                ('request_id', fields.CharField(null=True, max_length=64)),
                ('idempotency_key', fields.CharField(null=True, max_length=255)),
                ('request_hash', fields.CharField(null=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('queued_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('completed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'generations', 'app': 'models', 'unique_together': (('user', 'idempotency_key'),), 'indexes': [Index(fields=['user_id', 'created_at']), Index(fields=['status', 'queued_at'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='GenerationOutput',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('generation', fields.ForeignKeyField('models.Generation', source_field='generation_id', db_constraint=True, to_field='id', related_name='outputs', on_delete=OnDelete.CASCADE)),
                ('index', fields.IntField()),
                ('storage_key', fields.CharField(max_length=512)),
                ('content_type', fields.CharField(max_length=100)),
                ('size_bytes', fields.IntField()),
                ('width', fields.IntField(null=True)),
                ('height', fields.IntField(null=True)),
                ('text', fields.TextField(null=True, unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'generation_outputs', 'app': 'models', 'unique_together': (('generation', 'index'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('models.User', source_field='user_id', db_index=True, db_constraint=True, to_field='id', related_name='ledger_entries', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(description='GRANT: GRANT\nPURCHASE: PURCHASE\nRESERVE: RESERVE\nCAPTURE: CAPTURE\nRELEASE: RELEASE\nADJUSTMENT: ADJUSTMENT', enum_type=LedgerKind, max_length=16)),
                ('amount', fields.IntField()),
                ('held', fields.IntField(default=0)),
                ('balance_after', fields.IntField()),
                ('generation', fields.ForeignKeyField('models.Generation', source_field='generation_id', null=True, db_index=True, db_constraint=True, to_field='id', related_name='ledger_entries', on_delete=OnDelete.RESTRICT)),
                ('reference', fields.CharField(null=True, max_length=255)),
                ('unique_key', fields.CharField(null=True, unique=True, max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ledger_entries', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
