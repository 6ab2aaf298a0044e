"""End to end on object storage: ``generate | download | a user task on another worker`` with results in S3.

The deployment (simulator, webhook, workers, beat) keeps results in a bucket of moto's standalone S3
server; the user tasks run in other processes that know only the result dict: one reads the ``s3://``
``uri`` with its own AWS credentials, one fetches the ``presigned_url`` with no credentials at all.
Both check bytes and sha256 against what ``kie.download`` recorded.  Workers whose storage cannot work
(missing bucket, credentials the server refuses) do not start, and say which variable to fix.
"""

from __future__ import annotations

import hashlib

import pytest
import requests

from harness import unique
from s3support import SECRET_ACCESS_KEY, aws_env

PRESIGN_SECONDS = 600


@pytest.fixture(scope="module")
def s3dep(deploy, moto_server):
    bucket = moto_server.new_bucket()
    env = {**aws_env(moto_server.endpoint), "KIE_STORAGE_URL": f"s3://{bucket}/kie/results",
           "KIE_STORAGE_PRESIGN_SECONDS": str(PRESIGN_SECONDS)}
    with deploy("s3dep", start={"workers": 1, "concurrency": 2}, extra_env=env) as d:
        d.bucket = bucket
        d.no_credentials_queue = d.user_queue + "-nocreds"
        # another team's worker with no AWS credentials at all: it can only use presigned URLs
        d.start_user_worker(queue=d.no_credentials_queue, name="nocreds",
                            env={"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "KIE_S3_ENDPOINT_URL": ""})
        yield d


def read_files(dep, tag: str, via: str):
    queue = dep.no_credentials_queue if via == "presigned_url" else dep.user_queue
    return dep.producer.signature("user.read_files", kwargs={"tag": tag, "via": via}, queue=queue)


@pytest.mark.parametrize("via", ["uri", "presigned_url"])
def test_the_next_step_reads_the_result_from_another_process(s3dep, moto_server, via):
    tag = unique(f"s3-{via}").replace(" ", "-")
    res = (s3dep.generate(unique("a kingfisher over a pond")) | s3dep.download()
           | read_files(s3dep, tag, via)).apply_async()
    seen = res.get(timeout=120)
    downloaded = res.parent.get(timeout=5)
    files = downloaded["files"]
    assert len(files) == len(downloaded["result_urls"]) >= 1
    client = moto_server.client()
    for f, read in zip(files, seen):
        key = f"kie/results/{downloaded['job_id']}/0.png"
        assert f["uri"] == f"s3://{s3dep.bucket}/{key}" and f["path"] is None
        assert f["presigned_url"].startswith(f"{moto_server.endpoint}/{s3dep.bucket}/{key}?")
        assert f"X-Amz-Expires={PRESIGN_SECONDS}" in f["presigned_url"]
        body = client.get_object(Bucket=s3dep.bucket, Key=key)["Body"].read()
        assert hashlib.sha256(body).hexdigest() == f["sha256"] and len(body) == f["bytes"]
        head = client.head_object(Bucket=s3dep.bucket, Key=key)
        assert head["ContentType"] == f["content_type"] == "image/png"
        assert head["Metadata"] == {"sha256": f["sha256"], "bytes": str(f["bytes"])}
        assert read == {"sha256": f["sha256"], "bytes": f["bytes"], "via": via,
                        "had_credentials": via == "uri"}
    assert s3dep.recorded(tag) == [seen]


def test_a_redelivered_download_writes_the_same_key_and_skips_the_upload(s3dep, moto_server):
    first = (s3dep.generate(unique("a paper boat")) | s3dep.download()).apply_async().get(timeout=120)
    client = moto_server.client()
    key = first["files"][0]["uri"].split("/", 3)[3]
    before = client.head_object(Bucket=s3dep.bucket, Key=key)
    again = s3dep.download().apply_async(args=[{k: v for k, v in first.items() if k != "files"}]).get(timeout=60)
    assert [f["uri"] for f in again["files"]] == [f["uri"] for f in first["files"]]
    assert [f["sha256"] for f in again["files"]] == [f["sha256"] for f in first["files"]]
    after = client.head_object(Bucket=s3dep.bucket, Key=key)
    assert after["LastModified"] == before["LastModified"] and after["ETag"] == before["ETag"]


def test_healthz_reports_storage(s3dep):
    answer = requests.get(s3dep.web_url + "/healthz", timeout=10).json()
    assert answer["status"] == "ok" and answer["checks"]["storage"] == "ok"


def test_a_worker_with_a_missing_bucket_does_not_start(s3dep):
    proc = s3dep.stack.start_worker("nobucket", env={"KIE_STORAGE_URL": "s3://kie-no-such-bucket/x"}, wait=False)
    assert proc.wait(timeout=60) != 0
    log = s3dep.stack.log_of("nobucket")
    assert "KIE_STORAGE_URL" in log and "'kie-no-such-bucket' does not exist" in log and "ready." not in log


def test_a_worker_with_refused_credentials_does_not_start(s3dep, moto_auth_server):
    env = {**aws_env(moto_auth_server.endpoint), "KIE_STORAGE_URL": f"s3://{moto_auth_server.bucket}",
           "KIE_STORAGE_PRESIGN_SECONDS": ""}
    proc = s3dep.stack.start_worker("badcreds", env=env, wait=False)
    assert proc.wait(timeout=60) != 0
    log = s3dep.stack.log_of("badcreds")
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in log and "ready." not in log
    assert SECRET_ACCESS_KEY not in log
