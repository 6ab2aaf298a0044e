"""A user's own Celery worker, as another team would run it: tasks on its own queue, chained after ours.

``user.record`` stores the value it received (the previous step's result) under ``usertask:<tag>``
in Redis so tests can see exactly what arrived and how many times; ``user.on_error`` records the
failed task id an errback receives.
"""

import json
import os

import redis
from celery import Celery

app = Celery("userapp")
app.conf.update(
    broker_url=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/3"),
    result_backend=os.environ.get("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/3"),
    task_serializer="json", accept_content=["json"], result_serializer="json",
    task_default_queue=os.environ.get("KIE_USER_QUEUE", "user"),
    broker_connection_retry_on_startup=True,
)


def _redis():
    return redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/3"))


@app.task(name="user.record")
def record(value, tag):
    _redis().rpush(f"usertask:{tag}", json.dumps(value))
    return {"tag": tag, "received": value}


@app.task(name="user.on_error")
def on_error(task_id, tag):
    _redis().rpush(f"usertask:{tag}", json.dumps({"failed_task": task_id}))
