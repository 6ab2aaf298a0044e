"""A user's own Celery worker, as another team would run it: tasks on its own queue, chained after ours.

``user.record`` stores the value it received (the previous step's result) under ``usertask:<tag>``
in Redis so tests can see exactly what arrived and how many times; ``user.on_error`` records the
failed task id an errback receives.  ``user.read_files`` reads every file of a ``kie.download`` result
the way a service on another host would, knowing only the result: by ``presigned_url`` (plain HTTP, no
credentials), by an ``s3://`` ``uri`` (boto3 with this process's AWS configuration and
``KIE_S3_ENDPOINT_URL``) or by a ``file://`` ``uri``; it records each file's sha256 and size.
"""

import hashlib
import json
import os
import urllib.parse

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


@app.task(name="user.read_files")
def read_files(value, tag, via="uri"):
    seen = []
    for f in value["files"]:
        digest, size = hashlib.sha256(), 0
        if via == "presigned_url":
            import requests
            with requests.get(f["presigned_url"], stream=True, timeout=30) as answer:
                answer.raise_for_status()
                for block in answer.iter_content(64 * 1024):
                    digest.update(block)
                    size += len(block)
        elif f["uri"].startswith("s3://"):
            import boto3
            bucket, key = f["uri"][len("s3://"):].split("/", 1)
            client = boto3.client("s3", endpoint_url=os.environ.get("KIE_S3_ENDPOINT_URL"))
            for block in client.get_object(Bucket=bucket, Key=key)["Body"].iter_chunks(64 * 1024):
                digest.update(block)
                size += len(block)
        else:
            with open(urllib.parse.unquote(urllib.parse.urlsplit(f["uri"]).path), "rb") as fh:
                data = fh.read()
            digest.update(data)
            size = len(data)
        seen.append({"sha256": digest.hexdigest(), "bytes": size, "via": via,
                     "had_credentials": bool(os.environ.get("AWS_SECRET_ACCESS_KEY"))})
    _redis().rpush(f"usertask:{tag}", json.dumps(seen))
    return seen
