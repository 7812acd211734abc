"""Reading the metadata table's stream on moto through boto3, as the events function will
see it, and building images whose digests do not change between runs (for the samples)."""

from __future__ import annotations

import hashlib
import json

from oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Image, descriptor
from skyport.events import record_as_json
from skyport.registry import Registry


def stream_records(registry: Registry) -> list[dict]:
    """Every record of the table's stream so far, oldest first, in the JSON shape Lambda
    delivers (epoch-second times, base64 binaries)."""
    dynamodb, streams = registry.clients.dynamodb, registry.clients.dynamodbstreams
    table = dynamodb.describe_table(TableName=registry.settings.table)["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    arn = table["LatestStreamArn"]
    records: list[dict] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break  # an open shard always has a next iterator: stop at its end
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
    records.sort(key=lambda record: int(record["dynamodb"]["SequenceNumber"]))
    return [record_as_json(record) for record in records]


def fixed_image(seed: str, layer_size: int = 512) -> Image:
    """An OCI image whose bytes, and so digests, depend on ``seed`` only."""
    config = json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "seed": seed}
    ).encode()
    layer = (hashlib.sha256(seed.encode()).digest() * (layer_size // 32 + 1))[:layer_size]
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, config),
        "layers": [descriptor(OCI_LAYER, layer)],
    }
    return Image(config, [layer], json.dumps(manifest).encode(), OCI_MANIFEST)
