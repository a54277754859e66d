"""Synchronous: the poll, cancel and webhook of adapters that finish in start()."""

from __future__ import annotations

import httpx
import pytest

from models.generation import GenerationKind
from providers.base import ProviderError, ProviderRequest, Synchronous
from providers.gemini import GeminiProvider
from providers.http import ProviderHTTP
from providers.local import LocalProvider
from providers.openai import OpenAIProvider


def synchronous_adapters(client: httpx.AsyncClient) -> list[Synchronous]:
    http = ProviderHTTP("test", client)
    return [LocalProvider(), GeminiProvider(http, "key"), OpenAIProvider(http, "key")]


async def test_a_poll_or_webhook_of_a_synchronous_adapter_is_refused_for_good(client):
    request = ProviderRequest(kind=GenerationKind.IMAGE, model="m", prompt="p")
    for adapter in synchronous_adapters(client):
        with pytest.raises(ProviderError) as polled:
            await adapter.poll(request, "job-1")
        assert (polled.value.code, polled.value.retryable) == ("PROVIDER_ERROR", False)
        assert adapter.label in polled.value.message
        await adapter.cancel(request, "job-1")  # nothing to stop, and no error
        with pytest.raises(ProviderError) as hooked:
            adapter.parse_webhook({}, b"{}")
        assert (hooked.value.code, hooked.value.retryable) == ("WEBHOOK_REJECTED", False)
