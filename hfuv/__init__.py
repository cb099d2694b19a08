"""hfuv: run PEP 723 uv scripts as Hugging Face Jobs, or here, in one locked environment.

The public Python API. It never imports click.
"""

__version__ = "0.1.0"

__all__ = ["ScriptRequest", "__version__", "prepare_job"]


def __getattr__(name: str):  # lazy, so `import hfuv` stays cheap
    if name in ("prepare_job", "ScriptRequest"):
        from hfuv import job

        return getattr(job, name)
    raise AttributeError(name)
