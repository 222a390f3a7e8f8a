"""The foreign protocols' routes (OpenRLHF, slime, verl), mapped onto configured rewards."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
