"""Make aider and litellm start without the network: local price map, no update checks, no analytics,
no writes to the user's home outside the cache the orchestrator owns."""

from __future__ import annotations

import os
from pathlib import Path

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


def cache_home() -> Path:
    """The orchestrator's own cache (environments, aider's and litellm's files)."""
    return Path(os.environ.get("ORCHESTRATE_HOME", Path.home() / ".cache" / "orchestrator"))


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


def register_model(name: str, metadata: dict | None = None) -> None:
    """Make `name` known locally so that neither aider nor litellm fetches model information."""
    prepare()
    import litellm
    from aider import models

    mim = models.model_info_manager
    mim._cache_loaded = True  # never read ~/.aider/caches
    if not mim.content:
        mim.content = {}
    mim._update_cache = lambda: None  # never fetch the price map
    mim.openrouter_manager._update_cache = lambda *a, **k: None  # type: ignore[attr-defined]
    try:
        known = litellm.get_model_info(name)
    except Exception:
        known = None
    if metadata is None and known:
        return
    info = dict(DEFAULT_METADATA)
    if known:
        info.update({k: v for k, v in known.items() if v is not None})
    if metadata:
        info.update(metadata)
    info.setdefault("litellm_provider", name.split("/", 1)[0] if "/" in name else "openai")
    mim.local_model_metadata[name] = info
    try:
        litellm.register_model({name: info})
    except Exception:
        pass
