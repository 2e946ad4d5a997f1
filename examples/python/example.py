#!/usr/bin/env python3
"""A syncbase client in Python, run against your own node (see README.md beside this file).

Connects to the node's app API, logs in with its client token, then in database `example`
and a table of its own (`py-<pid>`): puts three rows, gets one, scans them, watches a put and
a delete arrive, and finally deletes every row it wrote (each delete leaves a ~70-byte
tombstone until the key is written again; the database stays, as databases cannot be
removed).

    python example.py                                # the node in ./syncbase-data
    python example.py --data-dir DIR                 # node.addr and client.token in DIR
    python example.py --addr 127.0.0.1:7700 --token-file DIR/client.token

Only `schema/` of the repository is needed: pycapnp reads `service.capnp` as it is.
"""

import argparse
import asyncio
import os
import sys

import capnp

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_SCHEMA_DIR = os.path.join(HERE, "..", "..", "schema")


def load_schema(schema_dir):
    """Loads service.capnp. `imports` must name the directory holding `capnp/stream.capnp`
    (the schema's `-> stream` imports it): pycapnp aborts Python on an import it cannot find,
    so the files are checked first."""
    schema_dir = os.path.abspath(schema_dir)
    needed = [os.path.join(schema_dir, "service.capnp"), os.path.join(schema_dir, "capnp", "stream.capnp")]
    missing = [path for path in needed if not os.path.isfile(path)]
    if missing:
        sys.exit(f"schema files missing: {', '.join(missing)} (pass --schema-dir REPO/schema)")
    return capnp.load(needed[0], imports=[schema_dir])


def node_address(args):
    """HOST, PORT from --addr, or from the node.addr file the node writes in its data dir."""
    addr = args.addr
    if addr is None:
        path = os.path.join(args.data_dir, "node.addr")
        try:
            with open(path) as f:
                addr = f.read().strip()
        except FileNotFoundError:
            sys.exit(f"no {path}: is the node running? (`syncbase serve`), or pass --addr")
    host, _, port = addr.rpartition(":")
    return host.strip("[]"), int(port)


def read_token(args):
    path = args.token_file or os.path.join(args.data_dir, "client.token")
    with open(path) as f:
        return f.read().strip()


def sinks(service):
    """The two callbacks the node pushes to: rows of a scan, changes of a watch."""

    class Rows(service.RowSink.Server):
        def __init__(self):
            self.rows = []

        async def push(self, rows, _context, **kwargs):
            self.rows.extend((row.key, bytes(row.value)) for row in rows)

    class Changes(service.WatchSink.Server):
        def __init__(self):
            self.changes = asyncio.Queue()

        async def push(self, changes, _context, **kwargs):
            for change in changes:
                kind = change.which()
                value = bytes(change.put) if kind == "put" else None
                self.changes.put_nowait((kind, change.key, value))

    return Rows, Changes


def by_name(capability, method, name):
    """`capability.method(name=...)`: pycapnp's shortcut clashes with a field called `name`."""
    request = getattr(capability, method + "_request")()
    request.name = name
    return request.send()


async def main(args):
    service = load_schema(args.schema_dir)
    Rows, Changes = sinks(service)
    host, port = node_address(args)
    stream = await capnp.AsyncIoStream.create_connection(host=host, port=port)
    client = capnp.TwoPartyClient(stream)
    gate = client.bootstrap().cast_as(service.Gate)
    svc = (await gate.login(token=read_token(args))).service.cast_as(service.Service)
    print(f"connected to {host}:{port}")

    db = (await by_name(svc, "database", "example")).db
    table_name = f"py-{os.getpid()}"
    table = (await by_name(db, "table", table_name)).table
    rows = {"apple": b"red", "banana": b"yellow", "cherry": b"dark red"}
    try:
        for key, value in rows.items():
            await table.put(key=key, value=value)
        print(f"put {len(rows)} rows in example/{table_name}")

        got = await table.get(key="banana")
        print(f"get banana -> {bytes(got.value).decode()} (found: {got.found})")

        scanned = Rows()
        count = (await table.scan(prefix="", sink=scanned)).count
        print(f"scan -> {count} rows: " + ", ".join(f"{k}={v.decode()}" for k, v in scanned.rows))

        changes = Changes()
        watch = asyncio.ensure_future(
            db.watch(table=table_name, prefix="", initialState=False, resumeMarker=b"", sink=changes)
        )
        await asyncio.sleep(0.5)  # the watch starts "from now": let it open before writing
        await table.put(key="date", value=b"brown")
        await table.delete(key="apple")
        for _ in range(2):
            kind, key, value = await asyncio.wait_for(changes.changes.get(), 10)
            print(f"watch -> {kind} {key}" + (f" = {value.decode()}" if value is not None else ""))
        watch.cancel()
        rows["date"] = b"brown"
    finally:
        for key in rows:
            await table.delete(key=key)
        print(f"cleaned up: deleted the {len(rows)} rows it wrote")


def arguments():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="syncbase-data", help="the node's data directory (node.addr, client.token)")
    parser.add_argument("--addr", help="the node's app address HOST:PORT (default: from DATA_DIR/node.addr)")
    parser.add_argument("--token-file", help="the client token file (default: DATA_DIR/client.token)")
    parser.add_argument("--schema-dir", default=DEFAULT_SCHEMA_DIR, help="the repository's schema/ directory")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(capnp.run(main(arguments())))
