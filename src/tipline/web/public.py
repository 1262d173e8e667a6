"""Public pages (placeholder until the web form lands; installs nothing)."""
from fastapi import FastAPI

from tipline.runtime import Runtime


def install(app: FastAPI, rt: Runtime) -> None:
    return None
