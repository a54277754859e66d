import json

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

from models.generation import WorkflowPhase

# A workflow's phase becomes a column of its own instead of `params["phase"]` and the stage
# text. Existing multi-view parents get the phase they are at: their views drawn ("views" in
# params), the front view being analysed (its stage), awaiting approval (its status); any
# other is still at its first step, which NULL stands for. The key leaves `params`.
ANALYSING = "analysing the front view"


def _phase(status: str, stage: str | None, params: dict) -> WorkflowPhase | None:
    if params.get("phase") == "views":
        return WorkflowPhase.VIEWS
    if stage == ANALYSING and status == "PROCESSING":
        return WorkflowPhase.ANALYSIS
    if status == "AWAITING_APPROVAL":
        return WorkflowPhase.APPROVAL
    return None


async def phase_from_params(apps, schema_editor) -> None:
    client = schema_editor.client
    numbered = client.capabilities.dialect == "postgres"
    rows = await client.execute_query_dict(
        "SELECT id, status, stage, params FROM generations WHERE kind = 'MULTI_VIEW'"
    )
    update = (
        "UPDATE generations SET phase = $1, params = $2 WHERE id = $3"
        if numbered
        else "UPDATE generations SET phase = ?, params = ? WHERE id = ?"
    )
    for row in rows:
        params = row["params"]
        params = json.loads(params) if isinstance(params, str | bytes) else dict(params or {})
        phase = _phase(row["status"], row["stage"], params)
        params.pop("phase", None)
        await client.execute_query(
            update, [phase.value if phase else None, json.dumps(params), row["id"]]
        )


class Migration(migrations.Migration):
    dependencies = [("models", "0006_credit_account_version")]

    initial = False

    operations = [
        ops.AddField(
            model_name="Generation",
            name="phase",
            field=fields.CharEnumField(
                null=True,
                description="FRONT_VIEW: FRONT_VIEW\nAPPROVAL: APPROVAL\nANALYSIS: ANALYSIS\nVIEWS: VIEWS",
                enum_type=WorkflowPhase,
                max_length=24,
            ),
        ),
        ops.RunPython(phase_from_params, reverse_code=ops.RunPython.noop),
    ]
