"""A real S3 API server for the tests: moto's standalone server (``python -m moto.server``) on a free
loopback port, spoken to only over HTTP, through boto3, as AWS would be.

``MotoServer`` starts and stops one; ``aws_env`` is the environment a process needs to reach it with
the test credentials (and never to look for others: no instance metadata, no credential files).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import requests

from secretscan import AWS_SECRET as SECRET_ACCESS_KEY
from worker.cli.stack import free_port

ACCESS_KEY_ID = "AKIAKIEQUEUETEST0001"
REGION = "us-east-1"

# never look for credentials or a region anywhere but the environment (and never at 169.254.169.254)
ISOLATION = {"AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
             "AWS_SHARED_CREDENTIALS_FILE": os.devnull}


def aws_env(endpoint: str, *, credentials: bool = True) -> dict[str, str]:
    env = {**ISOLATION, "AWS_DEFAULT_REGION": REGION, "KIE_S3_ENDPOINT_URL": endpoint}
    if credentials:
        env.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY})
    return env


class MotoServer:
    """``python -m moto.server`` on a free port; ``env`` adds to its environment (e.g. auth settings)."""

    def __init__(self, log_path: Path, env: dict | None = None):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                                     start_new_session=True)
        log.close()
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(self.endpoint + "/moto-api/data.json", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"moto server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)

    def client(self, **credentials):
        import boto3
        from botocore.config import Config
        return boto3.session.Session(
            aws_access_key_id=credentials.get("key", ACCESS_KEY_ID),
            aws_secret_access_key=credentials.get("secret", SECRET_ACCESS_KEY), region_name=REGION,
        ).client("s3", endpoint_url=self.endpoint, config=Config(s3={"addressing_style": "path"}))

    def new_bucket(self, *, versioned: bool = False) -> str:
        name = f"kie-test-{secrets.token_hex(6)}"
        client = self.client()
        client.create_bucket(Bucket=name)
        if versioned:
            client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class AuthMotoServer(MotoServer):
    """A moto server that checks credentials and signatures (``INITIAL_NO_AUTH_ACTION_COUNT``): one IAM
    user with an S3 policy, its key pair (``key_id``, ``secret``: random, made by moto) and one bucket.
    (It cannot check presigned URLs.)"""

    def __init__(self, log_path: Path):
        super().__init__(log_path, env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"})
        import json

        import boto3
        iam = boto3.session.Session(aws_access_key_id=ACCESS_KEY_ID, aws_secret_access_key=SECRET_ACCESS_KEY,
                                    region_name=REGION).client("iam", endpoint_url=self.endpoint)
        iam.create_user(UserName="kie-queue")
        key = iam.create_access_key(UserName="kie-queue")["AccessKey"]
        self.key_id, self.secret = key["AccessKeyId"], key["SecretAccessKey"]
        iam.put_user_policy(UserName="kie-queue", PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        self.bucket = f"kie-auth-{secrets.token_hex(4)}"
        self.client(key=self.key_id, secret=self.secret).create_bucket(Bucket=self.bucket)
