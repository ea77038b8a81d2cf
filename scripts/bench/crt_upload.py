"""Streams stdin into s3://BUCKET/KEY with boto3's CRT transfer manager (s3transfer's
CRTTransferManager on awscrt), the path boto3 takes with `preferred_transfer_client="crt"`.

boto3's own wrapper builds its CRT client for AWS (TLS on, no endpoint override); this builds
the same manager from the same parts with the local endpoint (AWS_ENDPOINT_URL) and path-style
addressing. Defaults otherwise: 8 MiB parts, CRT's own concurrency.

Usage: curl URL | python crt_upload.py BUCKET KEY   (`make bench`, xtask/src/bench/peers.rs)
"""

import os
import sys

import botocore.session
from botocore.config import Config
from s3transfer.crt import (
    BotocoreCRTCredentialsWrapper,
    BotocoreCRTRequestSerializer,
    CRTTransferManager,
    create_s3_crt_client,
)


class Stream:
    """stdin as a body of unknown length: read() only, so botocore does not try to seek it."""

    def __init__(self, raw):
        self._raw = raw

    def read(self, size=-1):
        return self._raw.read(size)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    bucket, key = sys.argv[1], sys.argv[2]
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    session = botocore.session.Session()
    credentials = session.get_credentials()
    provider = BotocoreCRTCredentialsWrapper(credentials).to_crt_credentials_provider()
    client = create_s3_crt_client(
        region,
        crt_credentials_provider=provider,
        use_ssl=endpoint.startswith("https:"),
    )
    serializer = BotocoreCRTRequestSerializer(
        session,
        {
            "region_name": region,
            "endpoint_url": endpoint,
            "config": Config(s3={"addressing_style": "path"}),
        },
    )
    with CRTTransferManager(client, serializer) as manager:
        manager.upload(Stream(sys.stdin.buffer), bucket, key).result()
    return 0


if __name__ == "__main__":
    sys.exit(main())
