"""lodash (`_`) and date-fns' `format` / `parseISO`, preloaded in every JavaScript handler: what a
handler sees, how calls stay apart although one realm per worker serves them all, and that the
shipped lodash is the npm registry's 4.17.21 byte for byte."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from lamrunner.errors import ScriptError
from lamrunner.js import preload
from lamrunner.js.runtime import JsEngine, JsLimits, check_handler

LIMITS = JsLimits(timeout=2.0, memory=32_000_000)


@pytest.fixture
async def engine() -> AsyncIterator[JsEngine]:
    eng = JsEngine(workers=1)  # one worker: every call below shares its realm
    yield eng
    eng.close()


async def run(engine: JsEngine, source: str, data: Any = None, **kw: Any) -> Any:
    logs: list[tuple[str, str]] = kw.pop("logs", [])
    limits = kw.pop("limits", LIMITS)
    text = await engine.call_handler(
        source, json.dumps(data), limits, lambda level, line: logs.append((level, line))
    )
    return json.loads(text)


async def fails(engine: JsEngine, source: str, **kw: Any) -> ScriptError:
    with pytest.raises(ScriptError) as info:
        await run(engine, source, **kw)
    return info.value


# ---------------------------------------------------------------- what a handler sees


async def test_lodash_is_there_at_its_version(engine: JsEngine) -> None:
    source = """(data) => ({
        version: _.VERSION,
        groups: _.groupBy(data.jobs, 'status'),
        sorted: _.map(_.sortBy(data.jobs, ['rows', 'id']), 'id'),
        chunks: _.chunk([1, 2, 3, 4, 5], 2),
        deep: _.get(data, 'jobs[1].meta.owner', 'nobody'),
        picked: _.pick(data.jobs[0], ['id']),
        chained: _.chain(data.jobs).filter({status: 'done'}).sumBy('rows').value(),
        template: _.template('hello <%= name %>')({name: 'lam'}),
    })"""
    jobs = [
        {"id": "b", "status": "done", "rows": 5},
        {"id": "a", "status": "failed", "rows": 5, "meta": {"owner": "ops"}},
        {"id": "c", "status": "done", "rows": 1},
    ]
    assert await run(engine, source, {"jobs": jobs}) == {
        "version": preload.LODASH_VERSION,
        "groups": {"done": [jobs[0], jobs[2]], "failed": [jobs[1]]},
        "sorted": ["c", "a", "b"],
        "chunks": [[1, 2], [3, 4], [5]],
        "deep": "ops",
        "picked": {"id": "b"},
        "chained": 6,
        "template": "hello lam",
    }


async def test_format_and_parse_iso_are_there(engine: JsEngine) -> None:
    source = """(data) => ({
        day: format(parseISO(data.at), 'yyyy-MM-dd'),
        long: format(parseISO(data.at), "EEEE, MMMM do yyyy 'at' HH:mm"),
        ms: parseISO(data.at).getTime(),
        invalid: isNaN(parseISO('soon').getTime()),
    })"""
    assert await run(engine, source, {"at": "2024-03-04T05:06:07Z"}) == {
        "day": "2024-03-04",
        "long": "Monday, March 4th 2024 at 05:06",
        "ms": 1709528767000,
        "invalid": True,
    }


async def test_date_fns_errors_are_range_errors_naming_the_handler_line(engine: JsEngine) -> None:
    err = await fails(engine, "(data) => {\n  return format(parseISO('soon'), 'yyyy');\n}")
    assert err.kind == "exception"
    assert err.message == "RangeError: Invalid time value (line 2, column 17)"
    err = await fails(engine, "() => format(new Date(0), 'yyyy-MM-dd Jq')")
    assert "unescaped latin alphabet character `J`" in err.message


async def test_an_error_inside_lodash_points_at_the_handler_not_at_lodash(
    engine: JsEngine,
) -> None:
    err = await fails(engine, "(data) => {\n  const f = _.flow(1);\n  return f();\n}")
    assert err.message == "TypeError: Expected a function (line 2, column 15)"
    assert (err.line, err.column) == (2, 15)  # `flow(` on the handler's line, not lodash's


async def test_a_handler_may_shadow_the_preloaded_names(engine: JsEngine) -> None:
    source = "const _ = {x: 1};\nfunction format(v) { return 'mine ' + v }\n(d) => [_.x, format(2)]"
    assert await run(engine, source) == [1, "mine 2"]
    assert await run(engine, "() => [typeof _.groupBy, typeof format(new Date(0), 'y')]") == [
        "function",
        "string",
    ]


async def test_validate_sees_the_preloaded_names_at_top_level() -> None:
    check_handler("const byStatus = _.partial(_.groupBy, _, 'status');\n(d) => byStatus(d.jobs)")


# ---------------------------------------------------------------- calls stay apart


async def test_changes_to_lodash_are_refused_and_never_reach_the_next_call(
    engine: JsEngine,
) -> None:
    """`_` is frozen: writes are ignored (lodash is sloppy code, so `_.mixin` adds nothing);
    `_.runInContext()` gives a private lodash to change."""
    source = """(d) => {
        _.foo = 1; _.map = () => 'hijacked'; _.templateSettings.interpolate = /x/;
        return [typeof _.foo, _.map([1], (n) => n + 1)];
    }"""
    assert await run(engine, source) == ["undefined", [2]]
    mixin = "() => { _.mixin({shout: (s) => s + '!'}); return typeof _.shout }"
    assert await run(engine, mixin) == "undefined"
    err = await fails(engine, "() => { 'use strict'; _.foo = 1 }")
    assert err.message.startswith("TypeError")
    own = "() => { const lo = _.runInContext(); lo.mixin({shout: (s) => s + '!'}); return lo.shout('a') }"
    assert await run(engine, own) == "a!"
    assert await run(engine, "() => [typeof _.shout, typeof _.foo]") == ["undefined"] * 2


async def test_prototype_pollution_through_lodash_goes_nowhere(engine: JsEngine) -> None:
    source = """(d) => {
        _.merge({}, JSON.parse('{"__proto__": {"polluted": 1}}'));
        _.set({}, 'constructor.prototype.polluted', 1);
        try { _.defaultsDeep({}, JSON.parse('{"constructor": {"prototype": {"polluted": 1}}}')) }
        catch (e) {}
        return ({}).polluted === undefined;
    }"""
    assert await run(engine, source) is True
    assert await run(engine, "() => ({}).polluted === undefined") is True


async def test_globals_and_top_level_declarations_are_per_call(engine: JsEngine) -> None:
    first = "var count = 1; let seen = 'a'; leaked = 2; function helper() { return 3 }\n(d) => 1"
    assert await run(engine, first) == 1
    probe = "() => [typeof count, typeof leaked, typeof helper, typeof globalThis.leaked]"
    assert await run(engine, probe) == ["undefined"] * 4
    again = "let seen = 'b';\n(d) => seen"  # would not compile if `seen` had stayed global
    assert await run(engine, again) == "b"
    counter = "let n = 0;\n(d) => ++n"
    assert [await run(engine, counter) for _ in range(3)] == [1, 1, 1]


async def test_ordinary_overrides_of_built_in_properties_still_work(engine: JsEngine) -> None:
    """Frozen prototypes would make `obj.toString = f` fail (the "override mistake"); the realm
    turns those properties into accessors that define the property on the object instead."""
    source = """(d) => {
        'use strict';
        class JobError extends Error {
            constructor(m) { super(m); this.name = 'JobError'; }
        }
        const o = {}; o.toString = () => 'custom'; o.constructor = 'mine';
        const e = new Error(); e.message = 'set later';
        return [new JobError('x').name, String(o), o.constructor, e.message,
                _.assign({}, {toString: 1, valueOf: 2}), Object.prototype.toString.call([])];
    }"""
    assert await run(engine, source) == [
        "JobError",
        "custom",
        "mine",
        "set later",
        {"toString": 1, "valueOf": 2},
        "[object Array]",
    ]
    err = await fails(engine, "() => { 'use strict'; Object.prototype.toString = () => 'x' }")
    assert "shared built-in" in err.message


async def test_promise_jobs_left_behind_run_in_their_own_call(engine: JsEngine) -> None:
    logs: list[tuple[str, str]] = []
    source = "() => { Promise.resolve().then(() => { console.log('late'); late = 1 }); return 0 }"
    assert await run(engine, source, logs=logs) == 0
    assert logs == [("info", "late")]
    assert await run(engine, "async () => { await null; return typeof late }") == "undefined"


async def test_a_call_that_breaks_the_realm_leaves_a_new_one_for_the_next(engine: JsEngine) -> None:
    stuck = "() => { Object.defineProperty(globalThis, 'stuck', {value: 1}); return 0 }"
    assert await run(engine, stuck) == 0
    assert await run(engine, "() => typeof stuck") == "undefined"
    assert await run(engine, "() => { Object.preventExtensions(globalThis); return 0 }") == 0
    assert await run(engine, "() => { fresh = 1; return fresh }") == 1
    bomb = "() => { const a = []; for (;;) a.push('x'.repeat(1000)) }"
    assert (await fails(engine, bomb)).kind == "memory"
    assert await run(engine, "() => _.sum([1, 2])") == 3


async def test_handler_memory_is_what_the_handler_may_use(engine: JsEngine) -> None:
    """The preloaded libraries take about a megabyte; they do not count against the limit."""
    small = JsLimits(timeout=2.0, memory=1_000_000)
    assert await run(engine, "() => _.range(1000).length", limits=small) == 1000
    big = "() => new Array(200000).fill(0).map((_, i) => ({i})).length"
    assert (await fails(engine, big, limits=small)).kind == "memory"


# ---------------------------------------------------------------- the shipped lodash


def _vendored() -> bytes:
    return (Path(preload.__file__).parent / "prelude" / "lodash.min.js").read_bytes()


def test_the_shipped_lodash_is_the_pinned_file() -> None:
    assert hashlib.sha256(_vendored()).hexdigest() == preload.LODASH_SHA256
    assert b"var VERSION" not in _vendored() and b'"4.17.21"' in _vendored()
    assert "MIT" in preload.library_text("LICENSE.lodash") or "Permission is hereby granted" in (
        preload.library_text("LICENSE.lodash")
    )


def test_the_shipped_lodash_is_the_npm_registrys(tmp_path: Path) -> None:
    """npm pack verifies the tarball against the registry's published integrity; we check the
    integrity again ourselves and compare the file inside with ours."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed to check lodash against the registry: run scripts/bootstrap.sh")
    env = {**os.environ, "npm_config_cache": str(tmp_path / "cache")}
    version = f"lodash@{preload.LODASH_VERSION}"
    try:
        integrity = subprocess.run(
            [npm, "view", version, "dist.integrity"],
            capture_output=True,
            text=True,
            check=True,
            env=env,
            timeout=60,
        ).stdout.strip()
        packed = (
            subprocess.run(
                [npm, "pack", version, "--pack-destination", str(tmp_path)],
                capture_output=True,
                text=True,
                check=True,
                env=env,
                timeout=120,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the npm registry could not be asked about {version}: {exc}")
        return  # offline: the pinned checksum above still holds the file
    tarball = (tmp_path / packed).read_bytes()
    algorithm, _, digest = integrity.partition("-")
    assert algorithm == "sha512"
    assert base64.b64encode(hashlib.sha512(tarball).digest()).decode() == digest
    with tarfile.open(tmp_path / packed) as archive:
        member = archive.extractfile("package/lodash.min.js")
        assert member is not None and member.read() == _vendored()
        license_file = archive.extractfile("package/LICENSE")
        assert license_file is not None
        assert license_file.read().decode() == preload.library_text("LICENSE.lodash")
