#!/usr/bin/env python3
"""Qdrant gRPC test server on Qdrant's real engine.

The janitor talks to Qdrant over gRPC. No Qdrant server binary can be installed on the test
machines, but two packages from Qdrant itself can:

* ``qdrant-client`` ships the gRPC code generated from Qdrant's ``.proto`` files (servicer
  base classes, messages) and the converters between gRPC and REST models;
* ``qdrant-edge-py`` ships Qdrant's shard engine (segments, payload indexes, filters,
  approximate counts, ``order_by``), the code the real server runs per shard.

This server glues them: each collection is one ``EdgeShard`` in its own directory under
``--storage-path`` (so data survives a restart, like the real server), and each RPC below is
translated gRPC -> REST model (qdrant-client's converters) -> engine types. Engine errors are
passed through with the real server's status codes. RPCs not listed answer UNIMPLEMENTED.

  qdrant.Qdrant/HealthCheck
  qdrant.Collections/List, Get, Create, Delete, CollectionExists
  qdrant.Points/Upsert, Delete (ids or filter), Get, Count (exact or approximate),
                Scroll (filter, payload selection, pagination, order_by),
                CreateFieldIndex, DeleteFieldIndex

Usage: qdrant_server.py --storage-path DIR [--host 127.0.0.1] [--port 6334] [--api-key KEY]
Prints ``READY host:port`` once it listens; SIGTERM / SIGINT stop it after flushing shards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import logging
import re
import shutil
import signal
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any, Callable

import grpc
import qdrant_edge as edge
from qdrant_client import grpc as pb
from qdrant_client.conversions.conversion import GrpcToRest, RestToGrpc
from qdrant_client.grpc import collections_service_pb2_grpc as collections_grpc
from qdrant_client.grpc import points_service_pb2_grpc as points_grpc
from qdrant_client.grpc import qdrant_pb2_grpc
from qdrant_client.http import models as rest

log = logging.getLogger("qdrant-test-server")

# Same rule as the server: names that are safe as a directory name.
COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_\-.]{1,255}$")

DISTANCES = {
    pb.Distance.Cosine: edge.Distance.Cosine,
    pb.Distance.Euclid: edge.Distance.Euclid,
    pb.Distance.Dot: edge.Distance.Dot,
    pb.Distance.Manhattan: edge.Distance.Manhattan,
}
DISTANCES_BACK = {v: k for k, v in DISTANCES.items()}

# gRPC FieldType (CreateFieldIndex) -> engine schema type
FIELD_TYPES = {
    pb.FieldType.FieldTypeKeyword: edge.PayloadSchemaType.Keyword,
    pb.FieldType.FieldTypeInteger: edge.PayloadSchemaType.Integer,
    pb.FieldType.FieldTypeFloat: edge.PayloadSchemaType.Float,
    pb.FieldType.FieldTypeGeo: edge.PayloadSchemaType.Geo,
    pb.FieldType.FieldTypeText: edge.PayloadSchemaType.Text,
    pb.FieldType.FieldTypeBool: edge.PayloadSchemaType.Bool,
    pb.FieldType.FieldTypeDatetime: edge.PayloadSchemaType.Datetime,
    pb.FieldType.FieldTypeUuid: edge.PayloadSchemaType.Uuid,
}
# engine schema type -> gRPC PayloadSchemaType (CollectionInfo.payload_schema)
SCHEMA_TYPES = {
    edge.PayloadSchemaType.Keyword: pb.PayloadSchemaType.Keyword,
    edge.PayloadSchemaType.Integer: pb.PayloadSchemaType.Integer,
    edge.PayloadSchemaType.Float: pb.PayloadSchemaType.Float,
    edge.PayloadSchemaType.Geo: pb.PayloadSchemaType.Geo,
    edge.PayloadSchemaType.Text: pb.PayloadSchemaType.Text,
    edge.PayloadSchemaType.Bool: pb.PayloadSchemaType.Bool,
    edge.PayloadSchemaType.Datetime: pb.PayloadSchemaType.Datetime,
    edge.PayloadSchemaType.Uuid: pb.PayloadSchemaType.Uuid,
}


class RpcError(Exception):
    """An error answered as a gRPC status, worded like the real server's."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def not_found(name: str) -> RpcError:
    return RpcError(grpc.StatusCode.NOT_FOUND, f"Not found: Collection `{name}` doesn't exist!")


# --------------------------------------------------------------------------------------
# REST model -> engine type conversion
# --------------------------------------------------------------------------------------


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.timezone.utc)
        return value.isoformat()
    return str(value)


def to_match(m: Any) -> Any:
    if isinstance(m, rest.MatchValue):
        return edge.MatchValue(m.value)
    if isinstance(m, rest.MatchText):
        return edge.MatchText(m.text)
    if isinstance(m, rest.MatchAny):
        return edge.MatchAny(list(m.any))
    if isinstance(m, rest.MatchExcept):
        return edge.MatchExcept(list(m.except_))
    if hasattr(rest, "MatchPhrase") and isinstance(m, rest.MatchPhrase):
        return edge.MatchPhrase(m.phrase)
    if hasattr(rest, "MatchTextAny") and isinstance(m, rest.MatchTextAny):
        return edge.MatchTextAny(m.text_any)
    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Bad request: unsupported match {m!r}")


def to_range(r: Any) -> Any:
    if isinstance(r, rest.DatetimeRange):
        return edge.RangeDateTime(gte=_iso(r.gte), gt=_iso(r.gt), lte=_iso(r.lte), lt=_iso(r.lt))
    return edge.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt)


def to_condition(c: Any) -> Any:
    if isinstance(c, rest.FieldCondition):
        kwargs: dict[str, Any] = {}
        if c.match is not None:
            kwargs["match"] = to_match(c.match)
        if c.range is not None:
            kwargs["range"] = to_range(c.range)
        if c.values_count is not None:
            v = c.values_count
            kwargs["values_count"] = edge.ValuesCount(lt=v.lt, gt=v.gt, lte=v.lte, gte=v.gte)
        if c.is_empty is not None:
            kwargs["is_empty"] = c.is_empty
        if c.is_null is not None:
            kwargs["is_null"] = c.is_null
        if c.geo_bounding_box or c.geo_radius or c.geo_polygon:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Bad request: geo conditions are not served")
        return edge.FieldCondition(c.key, **kwargs)
    if isinstance(c, rest.IsEmptyCondition):
        return edge.IsEmptyCondition(c.is_empty.key)
    if isinstance(c, rest.IsNullCondition):
        return edge.IsNullCondition(c.is_null.key)
    if isinstance(c, rest.HasIdCondition):
        return edge.HasIdCondition(set(c.has_id))
    if isinstance(c, rest.HasVectorCondition):
        return edge.HasVectorCondition(c.has_vector)
    if isinstance(c, rest.NestedCondition):
        return edge.NestedCondition(c.nested.key, to_filter(c.nested.filter))
    if isinstance(c, rest.Filter):
        return to_filter(c)
    raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Bad request: unsupported condition {c!r}")


def _conditions(cs: Any) -> list[Any] | None:
    if cs is None:
        return None
    if not isinstance(cs, list):
        cs = [cs]
    return [to_condition(c) for c in cs]


def to_filter(f: rest.Filter | None) -> Any:
    if f is None:
        return None
    min_should = None
    if f.min_should is not None:
        min_should = edge.MinShould(_conditions(f.min_should.conditions), f.min_should.min_count)
    return edge.Filter(
        must=_conditions(f.must),
        should=_conditions(f.should),
        must_not=_conditions(f.must_not),
        min_should=min_should,
    )


def from_grpc_condition(c: pb.Condition) -> Any:
    """A gRPC condition as an engine condition. Id lists (the janitor sends 10,000 per batch)
    and nested filters are converted directly, as the real server's Rust decoder would;
    every other condition goes through qdrant-client's REST models."""
    kind = c.WhichOneof("condition_one_of")
    if kind == "has_id":
        return edge.HasIdCondition({i.num if i.WhichOneof("point_id_options") == "num" else i.uuid
                                    for i in c.has_id.has_id})
    if kind == "filter":
        return from_grpc_filter(c.filter)
    return to_condition(GrpcToRest.convert_condition(c))


def from_grpc_filter(f: pb.Filter) -> Any:
    min_should = None
    if f.HasField("min_should"):
        min_should = edge.MinShould([from_grpc_condition(c) for c in f.min_should.conditions],
                                    f.min_should.min_count)
    return edge.Filter(
        must=[from_grpc_condition(c) for c in f.must],
        should=[from_grpc_condition(c) for c in f.should],
        must_not=[from_grpc_condition(c) for c in f.must_not],
        min_should=min_should,
    )


def grpc_filter(request: Any, field: str = "filter") -> Any:
    if not request.HasField(field):
        return None
    return from_grpc_filter(getattr(request, field))


def to_vector(v: Any) -> Any:
    if isinstance(v, dict):
        return {name: to_vector(inner) for name, inner in v.items()}
    if isinstance(v, rest.SparseVector):
        return edge.SparseVector(list(v.indices), list(v.values))
    return list(v)


def with_payload(request: Any, default: bool) -> Any:
    if not request.HasField("with_payload"):
        return default
    sel = GrpcToRest.convert_with_payload_selector(request.with_payload)
    if isinstance(sel, rest.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(list(sel.include))
    if isinstance(sel, rest.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(list(sel.exclude))
    return sel


def with_vectors(request: Any) -> Any:
    if not request.HasField("with_vectors"):
        return False
    return GrpcToRest.convert_with_vectors_selector(request.with_vectors)


def to_order_by(o: pb.OrderBy) -> Any:
    rest_o = GrpcToRest.convert_order_by(o)
    direction = None
    if rest_o.direction is not None:
        direction = edge.Direction.Desc if rest_o.direction == rest.Direction.DESC else edge.Direction.Asc
    start = rest_o.start_from
    if isinstance(start, dt.datetime):
        start = _iso(start)
    return edge.OrderBy(rest_o.key, direction=direction, start_from=start)


def index_schema(request: pb.CreateFieldIndexCollection) -> Any:
    if request.HasField("field_index_params"):
        p = request.field_index_params
        kind = p.WhichOneof("index_params")
        inner = getattr(p, kind)
        opts = {f.name: getattr(inner, f.name) for f, _ in inner.ListFields()}
        factories = {
            "keyword_index_params": edge.KeywordIndexParams,
            "integer_index_params": edge.IntegerIndexParams,
            "float_index_params": edge.FloatIndexParams,
            "geo_index_params": edge.GeoIndexParams,
            "bool_index_params": edge.BoolIndexParams,
            "datetime_index_params": edge.DatetimeIndexParams,
            "uuid_index_params": edge.UuidIndexParams,
        }
        if kind not in factories:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Bad request: {kind} is not served")
        allowed = {"lookup", "range", "is_principal", "on_disk", "is_tenant"}
        return factories[kind](**{k: v for k, v in opts.items() if k in allowed})
    if not request.HasField("field_type"):
        raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Wrong input: field_type is required")
    return FIELD_TYPES[request.field_type]


# --------------------------------------------------------------------------------------
# Collections: one engine shard per directory, plus the creation parameters in meta.json
# --------------------------------------------------------------------------------------


class Collection:
    def __init__(self, name: str, shard: Any, meta: dict[str, Any]):
        self.name = name
        self.shard = shard
        self.meta = meta
        self.lock = threading.RLock()
        self.op_id = 0

    def next_op(self, wait: bool) -> pb.UpdateResult:
        self.op_id += 1
        # the engine applies the update before returning, so wait=false is only acknowledged
        status = pb.UpdateStatus.Completed if wait else pb.UpdateStatus.Acknowledged
        return pb.UpdateResult(operation_id=self.op_id, status=status)


class Storage:
    def __init__(self, root: Path):
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.collections: dict[str, Collection] = {}
        for meta_file in sorted(root.glob("*/meta.json")):
            meta = json.loads(meta_file.read_text())
            shard = edge.EdgeShard.load(str(meta_file.parent / "shard"))
            self.collections[meta["name"]] = Collection(meta["name"], shard, meta)

    def get(self, name: str) -> Collection:
        with self.lock:
            coll = self.collections.get(name)
        if coll is None:
            raise not_found(name)
        return coll

    def create(self, name: str, config: Any, meta: dict[str, Any]) -> None:
        if not COLLECTION_NAME.match(name):
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Wrong input: invalid collection name `{name}`")
        with self.lock:
            if name in self.collections:
                raise RpcError(grpc.StatusCode.ALREADY_EXISTS, f"Wrong input: Collection `{name}` already exists!")
            path = self.root / name
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir(parents=True)
            shard = edge.EdgeShard.create(str(path / "shard"), config)
            (path / "meta.json").write_text(json.dumps(meta))
            self.collections[name] = Collection(name, shard, meta)

    def delete(self, name: str) -> bool:
        with self.lock:
            coll = self.collections.pop(name, None)
        if coll is None:
            return False
        with coll.lock:
            coll.shard.close()
        shutil.rmtree(self.root / name, ignore_errors=True)
        return True

    def close(self) -> None:
        with self.lock:
            for coll in self.collections.values():
                with coll.lock:
                    coll.shard.flush()
                    coll.shard.close()
            self.collections.clear()


def rpc(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map engine and conversion errors to the server's status codes; fill `time`."""

    def wrapper(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            response = fn(self, request, context)
        except RpcError as e:
            context.abort(e.code, e.message)
        except Exception as e:  # the engine raises plain Exceptions for bad requests
            message = str(e)
            log.debug("%s failed: %s", fn.__name__, message)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Bad request: {message}")
        elapsed = time.perf_counter() - started
        if hasattr(response, "time"):
            response.time = elapsed
        log.debug("%s %s %.1f ms", fn.__name__, getattr(request, "collection_name", ""), elapsed * 1000)
        return response

    wrapper.__name__ = fn.__name__
    return wrapper


class Service:
    def __init__(self, storage: Storage, version: str):
        self.storage = storage
        self.version = version


class QdrantService(Service, qdrant_pb2_grpc.QdrantServicer):
    def HealthCheck(self, request, context):
        return pb.HealthCheckReply(title="qdrant - vector search engine", version=self.version,
                                   commit="qdrant-edge-test-server")


def vectors_config(meta: dict[str, Any]) -> pb.VectorsConfig:
    def params(p: dict[str, Any]) -> pb.VectorParams:
        return pb.VectorParams(size=p["size"], distance=p["distance"])

    vectors = meta["vectors"]
    if "" in vectors and len(vectors) == 1:
        return pb.VectorsConfig(params=params(vectors[""]))
    return pb.VectorsConfig(params_map=pb.VectorParamsMap(map={k: params(v) for k, v in vectors.items()}))


class CollectionsService(Service, collections_grpc.CollectionsServicer):
    @rpc
    def List(self, request, context):
        with self.storage.lock:
            names = sorted(self.storage.collections)
        return pb.ListCollectionsResponse(collections=[pb.CollectionDescription(name=n) for n in names])

    @rpc
    def CollectionExists(self, request, context):
        with self.storage.lock:
            exists = request.collection_name in self.storage.collections
        return pb.CollectionExistsResponse(result=pb.CollectionExists(exists=exists))

    @rpc
    def Get(self, request, context):
        coll = self.storage.get(request.collection_name)
        with coll.lock:
            info = coll.shard.info()
        schema = {}
        for field, idx in info.payload_schema.items():
            schema[field] = pb.PayloadSchemaInfo(data_type=SCHEMA_TYPES.get(idx.data_type, 0), points=idx.points)
        params = pb.CollectionParams(
            shard_number=1, replication_factor=1, write_consistency_factor=1, on_disk_payload=True,
            vectors_config=vectors_config(coll.meta),
        )
        result = pb.CollectionInfo(
            status=pb.CollectionStatus.Green,
            optimizer_status=pb.OptimizerStatus(ok=True),
            segments_count=info.segments_count,
            points_count=info.points_count,
            indexed_vectors_count=info.indexed_vectors_count,
            payload_schema=schema,
            config=pb.CollectionConfig(
                params=params,
                hnsw_config=pb.HnswConfigDiff(m=16, ef_construct=100, full_scan_threshold=10000),
                # the real server's defaults (the engine runs its optimizers in-process)
                optimizer_config=pb.OptimizersConfigDiff(
                    deleted_threshold=0.2, vacuum_min_vector_number=1000, default_segment_number=0,
                    indexing_threshold=10000, flush_interval_sec=5,
                ),
                wal_config=pb.WalConfigDiff(wal_capacity_mb=32, wal_segments_ahead=0, wal_retain_closed=1),
            ),
        )
        result.created_at.FromSeconds(int(coll.meta["created_at"]))
        return pb.GetCollectionInfoResponse(result=result)

    @rpc
    def Create(self, request, context):
        vectors: dict[str, dict[str, int]] = {}
        if request.HasField("vectors_config"):
            vc = request.vectors_config
            if vc.HasField("params"):
                vectors[""] = {"size": vc.params.size, "distance": vc.params.distance}
            else:
                for name, p in vc.params_map.map.items():
                    vectors[name] = {"size": p.size, "distance": p.distance}
        for name, p in vectors.items():
            if p["distance"] not in DISTANCES:
                raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, f"Wrong input: unknown distance for `{name}`")
        sparse = {}
        if request.HasField("sparse_vectors_config"):
            sparse = {name: edge.EdgeSparseVectorParams() for name in request.sparse_vectors_config.map}
        edge_vectors: Any = None
        if list(vectors) == [""]:
            edge_vectors = edge.EdgeVectorParams(size=vectors[""]["size"], distance=DISTANCES[vectors[""]["distance"]])
        elif vectors:
            edge_vectors = {n: edge.EdgeVectorParams(size=p["size"], distance=DISTANCES[p["distance"]])
                            for n, p in vectors.items()}
        config = edge.EdgeConfig(vectors=edge_vectors, sparse_vectors=sparse or None)
        meta = {"name": request.collection_name, "vectors": vectors, "sparse": sorted(sparse),
                "created_at": time.time()}
        self.storage.create(request.collection_name, config, meta)
        return pb.CollectionOperationResponse(result=True)

    @rpc
    def Delete(self, request, context):
        return pb.CollectionOperationResponse(result=self.storage.delete(request.collection_name))


def ids_only(r: Any) -> bool:
    return not r.payload and r.vector is None and r.order_value is None


def add_records(results: Any, records: list[Any]) -> None:
    """Appends `records` to a repeated RetrievedPoint field. Records of ids only (the
    janitor's scrolls) are written straight into the message, as the real server's encoder
    would, instead of through the REST model and its validation."""
    for r in records:
        if ids_only(r):
            pid = results.add().id
            if isinstance(r.id, int):
                pid.num = r.id
            else:
                pid.uuid = str(r.id)
        else:
            results.append(record(r))


def record(r: Any) -> pb.RetrievedPoint:
    vector = r.vector
    if isinstance(vector, dict):
        vector = {k: (rest.SparseVector(indices=v.indices, values=v.values)
                      if isinstance(v, edge.SparseVector) else v) for k, v in vector.items()}
    rec = rest.Record(id=r.id, payload=r.payload or {}, vector=vector, order_value=r.order_value)
    return RestToGrpc.convert_record(rec)


class PointsService(Service, points_grpc.PointsServicer):
    @rpc
    def Upsert(self, request, context):
        coll = self.storage.get(request.collection_name)
        points = []
        for p in request.points:
            rp = GrpcToRest.convert_point_struct(p)
            points.append(edge.Point(rp.id, to_vector(rp.vector), rp.payload))
        op = edge.UpdateOperation.upsert_points(points)
        if request.HasField("update_filter"):
            op = edge.UpdateOperation.upsert_points(points, condition=grpc_filter(request, "update_filter"))
        with coll.lock:
            coll.shard.update(op)
            return pb.PointsOperationResponse(result=coll.next_op(request.wait))

    @rpc
    def Delete(self, request, context):
        coll = self.storage.get(request.collection_name)
        selector = request.points
        if selector.HasField("filter"):
            op = edge.UpdateOperation.delete_points_by_filter(from_grpc_filter(selector.filter))
        else:
            ids = [GrpcToRest.convert_point_id(i) for i in selector.points.ids]
            op = edge.UpdateOperation.delete_points(ids)
        with coll.lock:
            coll.shard.update(op)
            return pb.PointsOperationResponse(result=coll.next_op(request.wait))

    @rpc
    def Get(self, request, context):
        coll = self.storage.get(request.collection_name)
        ids = [GrpcToRest.convert_point_id(i) for i in request.ids]
        with coll.lock:
            records = coll.shard.retrieve(ids, with_payload(request, False), with_vectors(request)) if ids else []
        response = pb.GetResponse()
        add_records(response.result, records)
        return response

    @rpc
    def Count(self, request, context):
        coll = self.storage.get(request.collection_name)
        exact = request.exact if request.HasField("exact") else True
        with coll.lock:
            n = coll.shard.count(edge.CountRequest(exact=exact, filter=grpc_filter(request)))
        return pb.CountResponse(result=pb.CountResult(count=n))

    @rpc
    def Scroll(self, request, context):
        coll = self.storage.get(request.collection_name)
        limit = request.limit if request.HasField("limit") else 10
        if limit < 1:
            raise RpcError(grpc.StatusCode.INVALID_ARGUMENT, "Bad request: Limit cannot be 0")
        offset = GrpcToRest.convert_point_id(request.offset) if request.HasField("offset") else None
        order_by = to_order_by(request.order_by) if request.HasField("order_by") else None
        scroll = edge.ScrollRequest(offset=offset, limit=limit, filter=grpc_filter(request),
                                    with_payload=with_payload(request, True), with_vector=with_vectors(request),
                                    order_by=order_by)
        with coll.lock:
            records, next_offset = coll.shard.scroll(scroll)
        response = pb.ScrollResponse()
        add_records(response.result, records)
        if next_offset is not None and order_by is None:
            response.next_page_offset.CopyFrom(RestToGrpc.convert_extended_point_id(next_offset))
        return response

    @rpc
    def CreateFieldIndex(self, request, context):
        coll = self.storage.get(request.collection_name)
        op = edge.UpdateOperation.create_field_index(request.field_name, index_schema(request))
        with coll.lock:
            coll.shard.update(op)
            return pb.PointsOperationResponse(result=coll.next_op(request.wait))

    @rpc
    def DeleteFieldIndex(self, request, context):
        coll = self.storage.get(request.collection_name)
        with coll.lock:
            coll.shard.update(edge.UpdateOperation.delete_field_index(request.field_name))
            return pb.PointsOperationResponse(result=coll.next_op(request.wait))


class ApiKeyInterceptor(grpc.ServerInterceptor):
    """The server's auth layer: `api-key: KEY` or `authorization: Bearer KEY` metadata.
    HealthCheck stays open, as on the real server."""

    OPEN = {"/qdrant.Qdrant/HealthCheck", "/grpc.health.v1.Health/Check"}

    def __init__(self, api_key: str):
        self.api_key = api_key

    def intercept_service(self, continuation, details):
        if details.method in self.OPEN:
            return continuation(details)
        metadata = dict(details.invocation_metadata or ())
        key = metadata.get("api-key")
        auth = metadata.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[7:]
        if key is None:
            return deny("Must provide an API key or an Authorization bearer token")
        if key != self.api_key:
            return deny("Invalid API key or JWT")
        return continuation(details)


def deny(message: str):
    def handler(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    return grpc.unary_unary_rpc_method_handler(handler)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=6334, help="0 picks a free port")
    ap.add_argument("--storage-path", required=True, type=Path)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--version", default="1.20.0", help="version HealthCheck reports")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--log-level", default="WARNING")
    args = ap.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    host = args.host.strip("[]")
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to bind {host}: loopback only")

    storage = Storage(args.storage_path)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=args.workers),
        interceptors=[ApiKeyInterceptor(args.api_key)] if args.api_key else [],
        options=[("grpc.max_receive_message_length", 64 * 1024 * 1024),
                 ("grpc.max_send_message_length", 256 * 1024 * 1024)],
    )
    qdrant_pb2_grpc.add_QdrantServicer_to_server(QdrantService(storage, args.version), server)
    collections_grpc.add_CollectionsServicer_to_server(CollectionsService(storage, args.version), server)
    points_grpc.add_PointsServicer_to_server(PointsService(storage, args.version), server)
    port = server.add_insecure_port(f"{host}:{args.port}")
    if port == 0:
        raise SystemExit(f"could not bind {host}:{args.port}")
    server.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    print(f"READY {host}:{port}", flush=True)
    stop.wait()
    server.stop(grace=1).wait()
    storage.close()


if __name__ == "__main__":
    main()
