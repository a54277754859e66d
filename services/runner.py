"""Running one generation: the provider call, storing outputs, and the final transition.
Called by the `generation.run` actor with an id; safe to call any number of times."""

from __future__ import annotations

import logging
import uuid

from models.error_event import ErrorCategory, Severity
from models.generation import Generation
from observability.metrics import provider_call
from providers.base import Finished, ProviderError, ProviderRequest
from providers.registry import ProviderRegistry
from services import generations
from services.catalogue import Catalogue
from services.error_events import Occurrence, record, stack_of
from services.generations import StoredOutput
from storage import OutputStore, output_key

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The generation left PROCESSING under us (cancelled or timed out): drop the work."""


async def run_generation(
    generation_id: uuid.UUID,
    catalogue: Catalogue,
    registry: ProviderRegistry,
    store: OutputStore,
) -> None:
    generation = await generations.start(generation_id)
    if generation is None:
        return  # not QUEUED: a duplicate or late message, nothing to do
    try:
        outputs, provider = await _produce(generation, catalogue, registry, store)
    except Stopped:
        return
    except ProviderError as error:
        await _fail(generation, error.code, error.message, error)
        return
    except Exception as error:
        log.exception("generation %s crashed", generation_id)
        await _fail(generation, "INTERNAL_ERROR", "Something went wrong on our side.", error)
        return
    done = await generations.complete(generation_id, outputs, provider, attempt=generation.attempts)
    if done is None:
        # Cancelled between the last progress report and completion: the files are orphans.
        for output in outputs:
            await store.delete(output.storage_key)


async def _produce(
    generation: Generation, catalogue: Catalogue, registry: ProviderRegistry, store: OutputStore
) -> tuple[list[StoredOutput], str]:
    spec = catalogue.models.get(generation.model)
    if spec is None:
        raise ProviderError(
            "MODEL_UNAVAILABLE", "This model is no longer offered.", retryable=False
        )
    route = spec.routes[0]
    provider = registry.get(route.provider)
    if provider is None:
        raise ProviderError(
            "MODEL_UNAVAILABLE", "This model has no provider configured.", retryable=False
        )
    params = generation.params
    request = ProviderRequest(
        kind=generation.kind,
        model=route.model,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        width=params.get("width"),
        height=params.get("height"),
        seed=params.get("seed"),
        num_outputs=int(params.get("numOutputs", 1)),
        params=route.params,
        timeout=route.timeout,
    )

    async def progress(fraction: float, stage: str) -> None:
        # Storing takes the last tenth of the bar.
        if not await generations.report_progress(
            generation.id, 0.9 * fraction, stage, attempt=generation.attempts
        ):
            raise Stopped

    # Counted and timed per provider; a cancellation under us is not the provider's failure.
    with provider_call(provider.name, stopped=(Stopped,)):
        result = await provider.start(request, progress)
    if not isinstance(result, Finished) or any(o.data is None for o in result.outputs):
        # Queued providers and URL outputs arrive with the provider routing (poll + download).
        raise ProviderError(
            "PROVIDER_ERROR", "This provider is not supported yet.", retryable=False
        )
    results = result.outputs
    if not await generations.report_progress(
        generation.id, 0.9, "storing outputs", attempt=generation.attempts
    ):
        raise Stopped
    stored = []
    for index, output in enumerate(results):
        content_type = output.content_type or "application/octet-stream"
        data = output.data or b""
        key = output_key(generation.user_id, generation.id, index, content_type)
        await store.put(key, data, content_type)
        stored.append(
            StoredOutput(
                index, key, content_type, len(data), output.width, output.height, output.text
            )
        )
    return stored, provider.name


async def _fail(generation: Generation, code: str, message: str, error: BaseException) -> None:
    failed = await generations.fail(generation.id, code, message, attempt=generation.attempts)
    if failed is None:
        return
    await record(
        Occurrence(
            severity=Severity.ERROR,
            category=ErrorCategory.GENERATION,
            message=f"Generation failed: {code}: {message}",
            error_code=code,
            user_facing=True,
            user_message=message,
            user_id=str(generation.user_id),
            request_id=generation.request_id,
            function_name="generation.run",
            stack_trace=stack_of(error),
            metadata={"generationId": str(generation.id), "model": generation.model},
        )
    )
