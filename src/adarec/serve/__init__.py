"""Serving over HTTP (FastAPI + uvicorn): engines, item ids, the service and the app.

Needs the serve extra (``pip install 'adarec[serve]'``); see docs/serving.md.
"""
