#!/usr/bin/env python3
"""Foreign-client test for a syncbase node, written against schema/service.capnp only.

Connects to a running node with pycapnp (2.2.x, asyncio API), logs in through the bootstrap
`Gate` and exercises `Service`, `Database`, `Table` and a Python-implemented `RowSink`.
Prints one line per check and finally `N passed, M failed`; exits 1 if any check failed.

Usage:
    python test_client.py --addr HOST:PORT --token-file DIR/client.token --schema-dir REPO/schema
"""

import argparse
import asyncio
import os
import sys
import traceback

import capnp

CALL_TIMEOUT = 20.0  # seconds allowed for any single check

service = None  # the loaded schema module (set in load_schema)


def load_schema(schema_dir):
    """Loads service.capnp as-is from the repo.

    pycapnp aborts the whole process (rather than raising) when an import cannot be resolved,
    so check the files it will need first and fail with a readable message instead.
    """
    schema_dir = os.path.abspath(schema_dir)
    needed = [
        os.path.join(schema_dir, "service.capnp"),
        # `-> stream` makes the compiler import /capnp/stream.capnp, resolved via imports=.
        os.path.join(schema_dir, "capnp", "stream.capnp"),
    ]
    missing = [p for p in needed if not os.path.isfile(p)]
    if missing:
        sys.exit(f"schema files missing: {', '.join(missing)}")
    return capnp.load(needed[0], imports=[schema_dir])


class Failed(AssertionError):
    pass


def check(cond, msg):
    if not cond:
        raise Failed(msg)


def describe(exc):
    return getattr(exc, "description", None) or str(exc)


def first_line(text, limit=160):
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def by_name(cap, method, name, **fields):
    """Calls `cap.method(name=..., **fields)`. pycapnp's `cap.method(name=...)` shortcut clashes
    with its own `name` parameter, so build the request explicitly."""
    req = getattr(cap, method + "_request")()
    req.name = name
    for field, value in fields.items():
        setattr(req, field, value)
    return req.send()


async def expect_error(awaitable, error_id, what):
    """Awaits `awaitable`, which must fail with an exception whose description contains
    `error_id` (e.g. "InvalidArgument:"). Returns the description."""
    try:
        result = await awaitable
    except capnp.KjException as e:
        desc = describe(e)
        check(error_id in desc, f"{what}: expected an error containing {error_id!r}, got {desc!r}")
        # The schema promises the id *starts* the description; the C++ RPC layer under pycapnp
        # prefixes errors received from the peer with "remote exception: ".
        bare = desc.removeprefix("remote exception: ")
        check(bare.startswith(error_id), f"{what}: description does not start with {error_id!r}: {desc!r}")
        return first_line(desc)
    raise Failed(f"{what}: expected failure with {error_id!r}, but the call succeeded ({result!r})")


def collecting_sink_class():
    class CollectingSink(service.RowSink.Server):
        """A RowSink implemented in Python: keeps every pushed row (copied out of the message)."""

        def __init__(self):
            self.rows = []
            self.batches = 0

        async def push(self, rows, _context, **kwargs):
            self.batches += 1
            await asyncio.sleep(0.005)  # a slow consumer: the node must wait for acknowledgements
            for r in rows:
                self.rows.append((r.key, bytes(r.value)))

    return CollectingSink


class Runner:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    async def run(self, name, fn, fatal=False):
        """Runs one check; returns True if it passed. A failed `fatal` check stops the run."""
        try:
            detail = await asyncio.wait_for(fn(), CALL_TIMEOUT)
        except asyncio.TimeoutError:
            self.failed += 1
            print(f"FAIL  {name}: timed out after {CALL_TIMEOUT:.0f}s", flush=True)
            ok = False
        except Failed as e:
            self.failed += 1
            print(f"FAIL  {name}: {e}", flush=True)
            ok = False
        except Exception as e:  # unexpected exception (e.g. a remote error where none is due)
            self.failed += 1
            print(f"FAIL  {name}: unexpected {type(e).__name__}: {describe(e)}", flush=True)
            traceback.print_exc(file=sys.stdout)
            ok = False
        else:
            self.passed += 1
            print(f"ok    {name}" + (f" ({detail})" if detail else ""), flush=True)
            ok = True
        if fatal and not ok:
            raise Failed(f"cannot continue after failed check: {name}")
        return ok


async def main(args):
    host, _, port = args.addr.strip().rpartition(":")
    check(host and port.isdigit(), f"--addr must be HOST:PORT, got {args.addr!r}")
    host = host.strip("[]")
    with open(args.token_file) as f:
        token = f.read().strip()

    r = Runner()
    st = {}  # state shared between checks

    try:
        # ---- connect ----
        async def connect():
            stream = await capnp.AsyncIoStream.create_connection(host=host, port=int(port))
            st["client"] = capnp.TwoPartyClient(stream)
            st["gate"] = st["client"].bootstrap().cast_as(service.Gate)
            return f"{host}:{port}"

        await r.run("connect over TCP and get the bootstrap Gate", connect, fatal=True)
        gate = st["gate"]

        # ---- Gate ----
        async def login_wrong():
            desc = await expect_error(
                gate.login(token=token + "-wrong"), "NoAccess:", "login with a wrong token"
            )
            return desc

        await r.run("login with a wrong token fails with NoAccess:", login_wrong)

        async def login_wrong_empty():
            return await expect_error(gate.login(token=""), "NoAccess:", "login with an empty token")

        await r.run("login with an empty token fails with NoAccess:", login_wrong_empty)

        async def login_right():
            res = await gate.login(token=token)
            svc = res.service
            check(svc is not None, "login returned no service")
            st["svc"] = svc.cast_as(service.Service)
            # Prove it is a live Service by making a call on it.
            await st["svc"].listDatabases()

        await r.run("login with the right token returns a Service", login_right, fatal=True)
        svc = st["svc"]

        # ---- limits ----
        async def limits():
            lim = (await svc.limits()).limits
            vals = {
                "maxNameBytes": lim.maxNameBytes,
                "maxKeyBytes": lim.maxKeyBytes,
                "maxValueBytes": lim.maxValueBytes,
                "maxBatchOps": lim.maxBatchOps,
            }
            for k, v in vals.items():
                check(v > 0, f"limits().{k} = {v}, expected > 0")
            st["limits"] = vals
            return ", ".join(f"{k}={v}" for k, v in vals.items())

        await r.run("service.limits() returns positive limits", limits)

        # ---- database / table basics ----
        async def open_db():
            db = (await by_name(svc, "database", "pydb")).db
            name = (await db.name()).name
            check(name == "pydb", f"database('pydb').name() = {name!r}")
            t = (await by_name(db, "table", "t")).table
            tname = (await t.name()).name
            check(tname == "t", f"table('t').name() = {tname!r}")
            st["db"], st["t"] = db, t

        await r.run("database('pydb').table('t') opens, names match", open_db, fatal=True)
        db, t = st["db"], st["t"]

        async def puts():
            await t.put(key="a", value=b"1")
            await t.put(key="b", value=b"2")
            await t.put(key="c/x", value=b"3")

        await r.run("put a->1, b->2, c/x->3", puts)

        async def get_a():
            res = await t.get(key="a")
            check(res.found, "get('a'): found is False")
            check(bytes(res.value) == b"1", f"get('a'): value {bytes(res.value)!r}, expected b'1'")

        await r.run("get 'a' is found with b'1'", get_a)

        async def get_missing():
            res = await t.get(key="missing")
            check(not res.found, "get('missing'): found is True")
            check(bytes(res.value) == b"", f"get('missing'): value {bytes(res.value)!r}, expected empty")

        await r.run("get 'missing' is not found", get_missing)

        async def delete_b():
            res = await t.delete(key="b")
            check(res.existed is True, f"first delete('b'): existed = {res.existed}, expected True")
            res = await t.get(key="b")
            check(not res.found, "get('b') after delete: still found")

        await r.run("delete 'b' existed True (and is gone)", delete_b)

        async def delete_b_again():
            res = await t.delete(key="b")
            check(res.existed is False, f"second delete('b'): existed = {res.existed}, expected False")

        await r.run("delete 'b' again existed False", delete_b_again)

        async def empty_value():
            await t.put(key="empty", value=b"")
            res = await t.get(key="empty")
            check(res.found, "get('empty') after put of b'': found is False")
            check(bytes(res.value) == b"", f"get('empty'): value {bytes(res.value)!r}")
            res = await t.delete(key="empty")
            check(res.existed, "delete('empty'): existed is False")

        await r.run("an empty value is stored and found (found=True, value=b'')", empty_value)

        async def big_values():
            maxv = st.get("limits", {}).get("maxValueBytes", 4 << 20)
            tb = (await by_name(db, "table", "big")).table
            big = bytes(range(256)) * (maxv // 256) + b"x" * (maxv % 256)
            await tb.put(key="max", value=big)
            res = await tb.get(key="max")
            check(res.found and bytes(res.value) == big, f"get of a {maxv}-byte value returned something else")
            desc = await expect_error(
                tb.put(key="over", value=big + b"!"), "InvalidArgument:", f"put of a {maxv + 1}-byte value"
            )
            res = await tb.get(key="over")
            check(not res.found, "the over-limit value was stored anyway")
            return desc

        await r.run("a value of maxValueBytes round-trips; one byte more fails with InvalidArgument:", big_values)

        # ---- scan into a Python RowSink ----
        Sink = collecting_sink_class()

        async def scan_all():
            sink = Sink()
            res = await t.scan(prefix="", sink=sink)
            expected = [("a", b"1"), ("c/x", b"3")]
            check(sink.rows == expected, f"scan(''): sink got {sink.rows!r}, expected {expected!r}")
            check(res.count == len(expected), f"scan(''): count = {res.count}, expected {len(expected)}")
            return f"count={res.count}, {sink.batches} batch(es)"

        await r.run("scan '' pushes all rows in key order, returns count", scan_all)

        async def scan_prefix():
            sink = Sink()
            res = await t.scan(prefix="c/", sink=sink)
            expected = [("c/x", b"3")]
            check(sink.rows == expected, f"scan('c/'): sink got {sink.rows!r}, expected {expected!r}")
            check(res.count == 1, f"scan('c/'): count = {res.count}, expected 1")

        await r.run("scan 'c/' gets only 'c/x'", scan_prefix)

        # ---- batches ----
        def batch_request(ops):
            """Builds Database.batch(ops) from (table, key, value-or-None-for-delete) tuples."""
            req = db.batch_request()
            lst = req.init("ops", len(ops))
            for i, (table, key, value) in enumerate(ops):
                lst[i].table = table
                lst[i].key = key
                if value is None:
                    lst[i].delete = None
                else:
                    lst[i].put = value
            return req

        async def scan_many():
            # More rows than a node would reasonably put in one push, so the sink gets several
            # batches; the Python sink is slowish, so a node must respect flow control.
            tm = (await by_name(db, "table", "scanmany")).table
            n = 5000
            await batch_request([("scanmany", f"k{i:05d}", b"v%d" % i) for i in range(n)]).send()
            sink = Sink()
            res = await tm.scan(prefix="k", sink=sink)
            expected = [(f"k{i:05d}", b"v%d" % i) for i in range(n)]
            check(res.count == n, f"scan: count = {res.count}, expected {n}")
            check(len(sink.rows) == n, f"scan: sink got {len(sink.rows)} rows, expected {n}")
            check(sink.rows == expected, "scan: rows differ from those put (order, duplicates or values)")
            return f"{n} rows in {sink.batches} batch(es)"

        await r.run("scan of 5000 rows (put by one batch): every row once, in key order", scan_many)

        async def batch_ok():
            await batch_request(
                [
                    ("t", "bx", b"10"),
                    ("t2", "by", b"20"),
                    ("t", "a", None),  # delete
                    ("t2", "by", b"21"),  # later put of the same key wins
                ]
            ).send()
            t2 = (await by_name(db, "table", "t2")).table
            st["t2"] = t2
            res = await t.get(key="bx")
            check(res.found and bytes(res.value) == b"10", f"after batch: t/bx = {res.found}, {bytes(res.value)!r}")
            res = await t2.get(key="by")
            check(res.found and bytes(res.value) == b"21", f"after batch: t2/by = {res.found}, {bytes(res.value)!r} (expected b'21')")
            res = await t.get(key="a")
            check(not res.found, "after batch: t/a was not deleted")

        await r.run("batch with puts in two tables and a delete applies all", batch_ok)

        async def batch_bad():
            keylen = max(300, st.get("limits", {}).get("maxKeyBytes", 256) + 1)
            desc = await expect_error(
                batch_request(
                    [
                        ("t", "mustnotexist", b"x"),
                        ("t2", "by", None),  # would delete t2/by
                        ("t", "k" * keylen, b"y"),  # invalid: key too long
                        ("t2", "alsonot", b"z"),
                    ]
                ).send(),
                "InvalidArgument:",
                f"batch with a {keylen}-byte key",
            )
            res = await t.get(key="mustnotexist")
            check(not res.found, "failed batch still put t/mustnotexist")
            res = await st["t2"].get(key="alsonot")
            check(not res.found, "failed batch still put t2/alsonot")
            res = await st["t2"].get(key="by")
            check(res.found and bytes(res.value) == b"21", "failed batch still deleted t2/by")
            return desc

        await r.run("batch with a 300-byte key fails with InvalidArgument:, applies nothing", batch_bad)

        # ---- bad names and arguments ----
        async def bad_db_name():
            desc = await expect_error(
                by_name(svc, "database", "").db.name(), "InvalidArgument:", "database('')"
            )
            return desc

        await r.run("database('') fails with InvalidArgument:", bad_db_name)

        async def still_works():
            res = await t.get(key="c/x")
            check(res.found and bytes(res.value) == b"3", f"get('c/x') after error: {res.found}, {bytes(res.value)!r}")

        await r.run("connection still works after the error", still_works)

        async def bad_table_name():
            # The error may come from table() or from the first call on the handle.
            return await expect_error(
                by_name(db, "table", "").table.get(key="a"), "InvalidArgument:", "table('').get('a')"
            )

        await r.run("table('') fails with InvalidArgument:", bad_table_name)

        async def bad_keys():
            d1 = await expect_error(t.put(key="", value=b"x"), "InvalidArgument:", "put('')")
            await expect_error(t.get(key="k" * 300), "InvalidArgument:", "get(300-byte key)")
            await expect_error(t.put(key="a\nb", value=b"x"), "InvalidArgument:", "put(key with newline)")
            return d1

        await r.run("empty, 300-byte and control-char keys fail with InvalidArgument:", bad_keys)

        async def list_dbs():
            names = list((await svc.listDatabases()).names)
            check("pydb" in names, f"listDatabases() = {names!r}, missing 'pydb'")
            check("" not in names, f"listDatabases() = {names!r} contains the rejected name ''")
            check(names == sorted(names), f"listDatabases() = {names!r} is not in name order")
            return f"{names!r}"

        await r.run("service.listDatabases() includes 'pydb'", list_dbs)

        async def list_tables():
            tables = [(t.name, t.liveRows, t.liveBytes) for t in (await db.listTables()).tables]
            names = [name for name, _, _ in tables]
            check(names == sorted(names), f"listTables() = {names!r} is not in name order")
            rows = dict((name, live) for name, live, _ in tables)
            check(rows.get("scanmany") == 5000, f"listTables(): scanmany holds {rows.get('scanmany')} live rows, not 5000")
            status = [d for d in (await svc.storeStatus()).databases if d.database == "pydb"][0]
            check(sum(live for _, live, _ in tables) == status.liveRows, "tables' live rows differ from storeStatus's")
            check(sum(b for _, _, b in tables) == status.liveBytes, "tables' live bytes differ from storeStatus's")
            return f"{names!r}"

        await r.run("database.listTables(): tables in name order, adding up to storeStatus", list_tables)

        # ---- syncgroups ----
        sgs = svc.syncgroups().syncgroups
        ident = await svc.identity()
        sg_name = f"{ident.peerAddress}/py"

        def spec(prefixes):
            return {"description": "from python", "prefixes": [{"tableName": t, "row": p} for t, p in prefixes]}

        async def sg_create():
            res = await by_name(sgs, "create", sg_name, database="pydb", spec=spec([("t", "")]))
            info = res.sg
            check(info.sg.name == sg_name, f"created {info.sg.name!r}")
            check(str(info.sg.status) == "running", f"status {info.sg.status}")
            check(len(info.sg.joiners) == 1 and info.sg.joiners[0].member == ident.fingerprint, "this node is the only member")
            listed = [i.sg.name for i in (await sgs.list(database="pydb")).syncgroups]
            check(listed == [sg_name], f"list() = {listed!r}")
            return f"{sg_name} running, 1 member"

        await r.run("syncgroups.create() hosts a syncgroup here and list() shows it", sg_create)

        async def sg_bad():
            await expect_error(by_name(sgs, "create", f"{ident.peerAddress}/none", database="pydb", spec=spec([])),
                               "InvalidArgument:", "create(no prefixes)")
            await expect_error(by_name(sgs, "create", sg_name, database="pydb", spec=spec([("t", "")])),
                               "Exist:", "create(existing name)")
            await expect_error(by_name(sgs, "get", f"{ident.peerAddress}/unknown"), "NoExist:", "get(unknown)")
            return await expect_error(by_name(sgs, "create", "no-port/x", database="pydb", spec=spec([("t", "")])),
                                      "InvalidArgument:", "create(bad name)")

        await r.run("bad syncgroup specs and names fail with stable ids", sg_bad)

        async def sg_invite():
            token = (await by_name(sgs, "invite", sg_name, level="readWrite", expiresInSeconds=60, uses=2)).token
            check(token.startswith(f"syncbase://{ident.fingerprint}@"), f"token {token[:40]!r}...")
            check(token.split("#", 1)[0].endswith(sg_name), "the token names the syncgroup")
            return "syncbase://...#<secret>"

        await r.run("syncgroups.invite() mints a copyable token", sg_invite)
    except Failed as e:
        print(f"stopped: {e}", flush=True)

    print(f"{r.passed} passed, {r.failed} failed", flush=True)
    return 0 if r.failed == 0 else 1


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", required=True, help="the node's app address, HOST:PORT")
    p.add_argument("--token-file", required=True, help="the node's client.token file")
    p.add_argument("--schema-dir", required=True, help="the repo's schema/ directory")
    return p.parse_args()


if __name__ == "__main__":
    args = parse_args()
    service = load_schema(args.schema_dir)
    code = asyncio.run(capnp.run(main(args)))
    sys.exit(code)
