"""Make aider and litellm start without the network: local price map, no update checks, no analytics,
no writes to the user's home outside the cache the orchestrator owns."""

from __future__ import annotations

import os

from ..env import model_metadata_path

_DONE = False

SCRIPTED_MODEL = "openai/scripted-transcript"
DEFAULT_METADATA = {
    "max_input_tokens": 128000,
    "max_output_tokens": 8192,
    "max_tokens": 8192,
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0,
    "mode": "chat",
}


def prepare() -> None:
    """Set the environment before aider or litellm is imported. Idempotent."""
    global _DONE
    if _DONE:
        return
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    os.environ.setdefault("LITELLM_TELEMETRY", "False")
    os.environ["AIDER_ANALYTICS"] = "false"
    os.environ["AIDER_CHECK_UPDATE"] = "false"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HUB_OFFLINE"] = "1"
    _DONE = True


def local_metadata(name: str) -> dict | None:
    """Metadata the user gives for a model (prices, context size): $ORCHESTRATE_MODEL_METADATA or
    <ORCHESTRATE_HOME>/models.json, a JSON object keyed by model name."""
    import json

    path = model_metadata_path()
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        from ..errors import InputError

        raise InputError(path, "model metadata is not valid JSON") from None
    entry = data.get(name) if isinstance(data, dict) else None
    return entry if isinstance(entry, dict) else None


def no_hidden_retries() -> None:
    """Ours is the only retry loop. aider's (send_message retries while its doubled delay stays under
    RETRY_TIMEOUT) is off with RETRY_TIMEOUT = 0; the SDK's and litellm's are off per call (max_retries=0,
    num_retries=0, see AiderSession.ask). One more is litellm's: with drop_params (which aider sets) a 422
    is re-sent once without the parameters it names, and a second 422 becomes an empty reply; a 422 is the
    provider's answer, so it is raised as it came."""
    prepare()
    import aider.coders.base_coder as base_coder
    import litellm.llms.openai.openai as litellm_openai

    base_coder.RETRY_TIMEOUT = 0

    def raise_it(e, data):
        raise e

    if hasattr(litellm_openai, "drop_params_from_unprocessable_entity_error"):
        litellm_openai.drop_params_from_unprocessable_entity_error = raise_it


_NATIVE: dict[str, dict | None] = {}  # what litellm's own price map says of a model, before we register it


def native_info(name: str) -> dict | None:
    """litellm's own entry for `name` (None: unknown), read once, before register_model changes it."""
    prepare()
    if name not in _NATIVE:
        import litellm

        try:
            _NATIVE[name] = dict(litellm.get_model_info(name))
        except Exception:
            _NATIVE[name] = None
    return _NATIVE[name]


Prices = tuple[float, float]  # dollars per input token, per output token


def known_prices(name: str, settings: Prices | None = None) -> Prices | None:
    """The model's prices: the user's settings, else models.json, else litellm's map; None when no one
    knows them (then spending cannot be counted, and a budget cannot be enforced)."""
    if settings is not None:
        return settings
    for info in (local_metadata(name), native_info(name)):
        if info and (info.get("input_cost_per_token") is not None or info.get("output_cost_per_token") is not None):
            return float(info.get("input_cost_per_token") or 0.0), float(info.get("output_cost_per_token") or 0.0)
    return None


def register_model(name: str, metadata: dict | None = None, prices: Prices | None = None) -> None:
    """Make `name` known locally so that neither aider nor litellm fetches model information. Registered
    every time from the same sources (litellm's map, models.json, the settings' prices), so nothing of an
    earlier registration lingers."""
    prepare()
    metadata = metadata or local_metadata(name)
    known = native_info(name)
    import litellm
    from aider import models

    mim = models.model_info_manager
    mim._cache_loaded = True  # never read ~/.aider/caches
    if not mim.content:
        mim.content = {}
    mim._update_cache = lambda: None  # never fetch the price map
    mim.openrouter_manager._update_cache = lambda *a, **k: None  # type: ignore[attr-defined]
    if metadata is None and prices is None and known:
        return
    info = dict(DEFAULT_METADATA)
    if known:
        info.update({k: v for k, v in known.items() if v is not None})
    if metadata:
        info.update(metadata)
    if prices is not None:
        info["input_cost_per_token"], info["output_cost_per_token"] = prices
    info.setdefault("litellm_provider", name.split("/", 1)[0] if "/" in name else "openai")
    mim.local_model_metadata[name] = info
    try:
        litellm.register_model({name: info})
    except Exception:
        pass
