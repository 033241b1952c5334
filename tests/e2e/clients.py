"""The four real S3 clients behind one small interface, so one scenario runs
through each: boto3 (in process), awscli, s3cmd and rclone (as the user runs
them). Every client connects from a chosen source address (its country) and
addresses buckets path-style at the proxy's address.

A failed operation raises `ClientFailed` carrying the text the user would
read (the exception message, or the tool's stdout and stderr).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

from servers import ACCESS_KEY, FR, REGION, SECRET_KEY

HERE = Path(__file__).resolve().parent
BOUND = HERE / "bound.py"
MiB = 1024 * 1024
TIMEOUT = 300  # seconds for any one command


class ClientFailed(Exception):
    """An operation failed; `str(e)` is what the user reads."""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "RCLONE_CONFIG"}
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], binary_output: bool = False):
    done = subprocess.run(args, env=env, capture_output=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise ClientFailed(
            f"{Path(args[0]).name} exited {done.returncode}\n"
            f"stdout: {done.stdout.decode(errors='replace')}\nstderr: {done.stderr.decode(errors='replace')}"
        )
    return done.stdout if binary_output else done.stdout.decode()


def curl(url: str, source: str, ca: Path | None, *extra: str) -> bytes:
    """curl from `source`, the URL sent as given (--path-as-is: no dot-segment
    removal); fails on an HTTP error with the response body in the message."""
    args = ["curl", "-sS", "--path-as-is", "--interface", source, "--max-time", "120",
            "-w", "\n%{http_code}"]
    if ca:
        args += ["--cacert", str(ca)]
    done = subprocess.run([*args, *extra, url], capture_output=True, timeout=TIMEOUT)
    body, _, status = done.stdout.rpartition(b"\n")
    if done.returncode != 0 or not status.startswith(b"2"):
        raise ClientFailed(f"curl: HTTP {status.decode()} {done.stderr.decode()}\n{body.decode(errors='replace')}")
    return body


class Client:
    name = ""
    presigns_put = False
    # False for rclone, which treats keys as file paths: it sends
    # "dir//double.txt" as "dir/double.txt" and "./dot/../seg" as "seg".
    keeps_keys_raw = True

    def __init__(self, endpoint: str, source: str, workdir: Path, ca: Path | None = None):
        self.endpoint = endpoint
        self.source = source
        self.workdir = workdir
        self.ca = ca
        workdir.mkdir(parents=True, exist_ok=True)

    # Presigned URLs are used with curl from the same address.
    def fetch(self, url: str, *extra: str) -> bytes:
        return curl(url, self.source, self.ca, *extra)

    def upload_presigned(self, url: str, path: Path) -> None:
        curl(url, self.source, self.ca, "-T", str(path))


class Boto3(Client):
    name = "boto3"
    presigns_put = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        import boto3
        from boto3.s3.transfer import TransferConfig
        from botocore.config import Config

        self.s3 = boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            verify=str(self.ca) if self.ca else None,
            # s3v4 as MinIO, Ceph and Garage documentation set it: without
            # it botocore presigns with SigV2 in us-east-1.
            config=Config(s3={"addressing_style": "path"}, signature_version="s3v4"),
        )
        # botocore has no option for the source address; its urllib3 pool
        # manager passes connection_pool_kw to every connection it opens.
        self.s3._endpoint.http_session._manager.connection_pool_kw["source_address"] = (self.source, 0)
        self.transfer = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB,
                                       max_concurrency=4)

    def _call(self, fn, *args, **kwargs):
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return fn(*args, **kwargs)
        except (ClientError, BotoCoreError, Boto3Error) as e:
            raise ClientFailed(str(e)) from e

    def make_bucket(self, bucket):
        self._call(self.s3.create_bucket, Bucket=bucket)

    def list_buckets(self):
        return [b["Name"] for b in self._call(self.s3.list_buckets)["Buckets"]]

    def put(self, bucket, key, path):
        with open(path, "rb") as body:
            self._call(self.s3.put_object, Bucket=bucket, Key=key, Body=body)

    def get(self, bucket, key, path):
        rsp = self._call(self.s3.get_object, Bucket=bucket, Key=key)
        Path(path).write_bytes(rsp["Body"].read())

    def get_range(self, bucket, key, first, last):
        return self._call(self.s3.get_object, Bucket=bucket, Key=key, Range=f"bytes={first}-{last}")["Body"].read()

    def head(self, bucket, key):
        return self._call(self.s3.head_object, Bucket=bucket, Key=key)["ContentLength"]

    def copy(self, bucket, src, dst):
        self._call(self.s3.copy_object, Bucket=bucket, Key=dst, CopySource={"Bucket": bucket, "Key": src})

    def delete(self, bucket, key):
        self._call(self.s3.delete_object, Bucket=bucket, Key=key)

    def list_keys(self, bucket):
        rsp = self._call(self.s3.list_objects_v2, Bucket=bucket)
        return [o["Key"] for o in rsp.get("Contents", [])]

    def put_large(self, bucket, key, path):
        self._call(self.s3.upload_file, str(path), bucket, key, Config=self.transfer)

    def get_large(self, bucket, key, path):
        self._call(self.s3.download_file, bucket, key, str(path), Config=self.transfer)

    def presign_get(self, bucket, key):
        return self.s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)

    def presign_put(self, bucket, key):
        return self.s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=600)


class AwsCli(Client):
    name = "awscli"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.workdir / "aws-config"
        config.write_text(
            "[default]\n"
            "s3 =\n"
            "    addressing_style = path\n"
            "    signature_version = s3v4\n"
            "    multipart_threshold = 8MB\n"
            "    multipart_chunksize = 8MB\n"
            "    max_concurrent_requests = 4\n"
        )
        self.env = clean_env(
            AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION=REGION,
            AWS_CONFIG_FILE=str(config), AWS_SHARED_CREDENTIALS_FILE=str(self.workdir / "none"),
        )
        if self.ca:
            self.env["AWS_CA_BUNDLE"] = str(self.ca)

    def aws(self, *args: str, binary: bool = False):
        base = [sys.executable, str(BOUND), self.source, "-m", "awscli",
                "--endpoint-url", self.endpoint, "--output", "json"]
        if self.ca:
            base += ["--ca-bundle", str(self.ca)]
        return run([*base, *args], self.env, binary)

    def make_bucket(self, bucket):
        self.aws("s3api", "create-bucket", "--bucket", bucket)

    def list_buckets(self):
        return [b["Name"] for b in json.loads(self.aws("s3api", "list-buckets"))["Buckets"]]

    def put(self, bucket, key, path):
        self.aws("s3api", "put-object", "--bucket", bucket, "--key", key, "--body", str(path))

    def get(self, bucket, key, path):
        self.aws("s3api", "get-object", "--bucket", bucket, "--key", key, str(path))

    def get_range(self, bucket, key, first, last):
        out = self.workdir / "range.out"
        self.aws("s3api", "get-object", "--bucket", bucket, "--key", key,
                 "--range", f"bytes={first}-{last}", str(out))
        return out.read_bytes()

    def head(self, bucket, key):
        return json.loads(self.aws("s3api", "head-object", "--bucket", bucket, "--key", key))["ContentLength"]

    def copy(self, bucket, src, dst):
        source = urllib.parse.quote(f"{bucket}/{src}", safe="/")
        self.aws("s3api", "copy-object", "--bucket", bucket, "--key", dst, "--copy-source", source)

    def delete(self, bucket, key):
        self.aws("s3api", "delete-object", "--bucket", bucket, "--key", key)

    def list_keys(self, bucket):
        out = self.aws("s3api", "list-objects-v2", "--bucket", bucket)
        return [o["Key"] for o in (json.loads(out) if out.strip() else {}).get("Contents", [])]

    def put_large(self, bucket, key, path):
        self.aws("s3", "cp", "--no-progress", str(path), f"s3://{bucket}/{key}")

    def get_large(self, bucket, key, path):
        self.aws("s3", "cp", "--no-progress", f"s3://{bucket}/{key}", str(path))

    def presign_get(self, bucket, key):
        return self.aws("s3", "presign", f"s3://{bucket}/{key}", "--expires-in", "600").strip()


class S3cmd(Client):
    """Debian's s3cmd: SigV4 for its own requests (SigV2 with `v2=True`),
    SigV2 for the URLs it presigns. It cannot ask for a byte range, so its
    ranged GET is curl with a Range header on a URL s3cmd presigned."""

    name = "s3cmd"

    def __init__(self, *args, v2: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        host = urllib.parse.urlsplit(self.endpoint).netloc
        https = self.endpoint.startswith("https:")
        self.config = self.workdir / ("s3cfg-v2" if v2 else "s3cfg")
        self.config.write_text(
            "[default]\n"
            f"access_key = {ACCESS_KEY}\n"
            f"secret_key = {SECRET_KEY}\n"
            f"host_base = {host}\n"
            # No %(bucket)s: path-style addressing.
            f"host_bucket = {host}\n"
            f"bucket_location = {REGION}\n"
            f"use_https = {https}\n"
            f"signurl_use_https = {https}\n"
            f"check_ssl_certificate = True\n"
            f"ca_certs_file = {self.ca or ''}\n"
            f"signature_v2 = {v2}\n"
            "multipart_chunk_size_mb = 16\n"
            "progress_meter = False\n"
        )
        self.env = clean_env(HOME=str(self.workdir))

    def s3cmd(self, *args: str):
        # Debian's s3cmd runs on Debian's python3 with its own S3 package.
        return run(["/usr/bin/python3", str(BOUND), self.source, "/usr/bin/s3cmd",
                    "-c", str(self.config), *args], self.env)

    def make_bucket(self, bucket):
        self.s3cmd("mb", f"s3://{bucket}")

    def list_buckets(self):
        return [line.split("s3://", 1)[1].rstrip("/") for line in self.s3cmd("ls").splitlines() if "s3://" in line]

    def put(self, bucket, key, path):
        self.s3cmd("put", str(path), f"s3://{bucket}/{key}")

    def get(self, bucket, key, path):
        if any(c in key for c in "*?["):
            # s3cmd reads these as a glob and lists to expand it; s3s-fs's
            # listings carry no ETag, which s3cmd 2.3 requires. The object is
            # read through a URL s3cmd presigned instead.
            Path(path).write_bytes(self.fetch(self.presign_get(bucket, key)))
            return
        self.s3cmd("get", "--force", f"s3://{bucket}/{key}", str(path))

    def get_range(self, bucket, key, first, last):
        return self.fetch(self.presign_get(bucket, key), "-H", f"Range: bytes={first}-{last}")

    def head(self, bucket, key):
        for line in self.s3cmd("info", f"s3://{bucket}/{key}").splitlines():
            if line.strip().startswith("File size:"):
                return int(line.split(":", 1)[1])
        raise ClientFailed("s3cmd info printed no size")

    def copy(self, bucket, src, dst):
        self.s3cmd("cp", f"s3://{bucket}/{src}", f"s3://{bucket}/{dst}")

    def delete(self, bucket, key):
        self.s3cmd("del", f"s3://{bucket}/{key}")

    def list_keys(self, bucket):
        prefix = f"s3://{bucket}/"
        return [line.split(prefix, 1)[1] for line in self.s3cmd("ls", "-r", prefix).splitlines() if prefix in line]

    def put_large(self, bucket, key, path):
        self.put(bucket, key, path)

    def get_large(self, bucket, key, path):
        self.get(bucket, key, path)

    def presign_get(self, bucket, key):
        return self.s3cmd("signurl", f"s3://{bucket}/{key}", "+600").strip()


class Rclone(Client):
    """Debian's rclone (1.60), which fails when AWS_CA_BUNDLE is set."""

    name = "rclone"
    keeps_keys_raw = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.config = self.workdir / "rclone.conf"
        self.config.write_text(
            "[e2e]\n"
            "type = s3\n"
            "provider = Other\n"
            f"access_key_id = {ACCESS_KEY}\n"
            f"secret_access_key = {SECRET_KEY}\n"
            f"endpoint = {self.endpoint}\n"
            f"region = {REGION}\n"
            "force_path_style = true\n"
            "upload_cutoff = 16M\n"
            "chunk_size = 16M\n"
        )
        self.env = clean_env(HOME=str(self.workdir))
        self.flags: list[str] = []

    def rclone(self, *args: str, binary: bool = False):
        base = ["rclone", "--config", str(self.config), "--bind", self.source]
        if self.ca:
            base += ["--ca-cert", str(self.ca)]
        return run([*base, *self.flags, *args], self.env, binary)

    def make_bucket(self, bucket):
        self.rclone("mkdir", f"e2e:{bucket}")

    def list_buckets(self):
        return [line.rstrip("/") for line in self.rclone("lsf", "e2e:").splitlines()]

    def put(self, bucket, key, path):
        self.rclone("copyto", str(path), f"e2e:{bucket}/{key}")

    def get(self, bucket, key, path):
        self.rclone("copyto", f"e2e:{bucket}/{key}", str(path))

    def get_range(self, bucket, key, first, last):
        return self.rclone("cat", "--offset", str(first), "--count", str(last - first + 1),
                           f"e2e:{bucket}/{key}", binary=True)

    def head(self, bucket, key):
        return json.loads(self.rclone("lsjson", "--stat", f"e2e:{bucket}/{key}"))["Size"]

    def copy(self, bucket, src, dst):
        self.rclone("copyto", f"e2e:{bucket}/{src}", f"e2e:{bucket}/{dst}")

    def delete(self, bucket, key):
        self.rclone("deletefile", f"e2e:{bucket}/{key}")

    def list_keys(self, bucket):
        # Not recursive: rclone lists recursively with an empty delimiter,
        # which s3s-fs 0.14.1 mishandles (it answers wrong prefixes or hangs).
        return self.rclone("lsf", "--files-only", f"e2e:{bucket}").splitlines()

    def put_large(self, bucket, key, path):
        self.put(bucket, key, path)

    def get_large(self, bucket, key, path):
        self.get(bucket, key, path)

    def presign_get(self, bucket, key):
        return self.rclone("link", "--expire", "10m", f"e2e:{bucket}/{key}").strip()


CLIENTS = {c.name: c for c in (Boto3, AwsCli, S3cmd, Rclone)}


BUCKET = "residency"


def seed(s3_url: str, workdir: Path, body: Path) -> None:
    """Makes BUCKET and BUCKET/seed.bin straight in s3s-fs (not through the
    proxy), so that a refusal through the proxy is never a 404 in disguise."""
    direct = Boto3(s3_url, FR, workdir / "seed")
    direct.make_bucket(BUCKET)
    direct.put(BUCKET, "seed.bin", body)
