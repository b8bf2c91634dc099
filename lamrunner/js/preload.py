"""The libraries every JavaScript handler finds preloaded: lodash as `_`, date-fns' `format` and
`parseISO`, as Laminar documents them (lodash 4.17, date-fns 2.30).

Why they come from where they do:

* **lodash is vendored**, byte for byte the `lodash.min.js` of the npm package lodash@4.17.21
  (MIT; its LICENSE beside it). The package index has no maintained copy of 4.17.21: js.lodash
  stops at 4.17.4 (2017) and XStatic-lodash at 4.16.4, both before the fixes for
  CVE-2019-10744 (defaultsDeep), CVE-2020-8203 (zipObjectDeep) and CVE-2021-23337 (template),
  so a dependency would bring an older, vulnerable lodash and a package to trust for 73 KB of
  text. `LODASH_SHA256` pins the file; tests/test_preload.py checks it against the npm
  registry's own tarball when npm is there.
* **date-fns is written here** (prelude/datefns.js): only two functions are preloaded, and
  date-fns 2.30's build is CommonJS spread over hundreds of modules. tests/test_datefns.py
  runs the real date-fns 2.30.0 in Node on the same dates and patterns and compares.

They are evaluated once per worker thread, into the context every handler call on that thread
reuses (see lamrunner/js/runtime.py: `_HandlerRealm`), never per call: parsing lodash costs
about 10 ms, a handler call about a tenth of a millisecond. Each library's code starts at line
`LIBRARY_LINE` + 1 so that error locations can tell its frames from the handler's.
"""

from __future__ import annotations

import functools
from importlib import resources

LODASH_VERSION = "4.17.21"
LODASH_SHA256 = "a9705dfc47c0763380d851ab1801be6f76019f6b67e40e9b873f8b4a0603f7a9"
DATE_FNS_VERSION = "2.30.0"
LIBRARY_LINE = 100_000  # library frames report lines past this; handler sources stay below it
LIBRARY_FILES = ("lodash.min.js", "datefns.js")
PRELOADED_GLOBALS = ("_", "format", "parseISO")


def library_text(name: str) -> str:
    """One file of lamrunner/js/prelude, as shipped in the wheel."""
    return (resources.files("lamrunner.js") / "prelude" / name).read_text(encoding="utf-8")


@functools.cache
def library_sources() -> tuple[str, ...]:
    """The libraries' programs, in order, each shifted to start past LIBRARY_LINE."""
    return tuple("\n" * LIBRARY_LINE + library_text(name) for name in LIBRARY_FILES)


# ---------------------------------------------------------------- the handler realm's JS
#
# A worker's handler context is reused by every call on that thread, so what one call does must
# not reach the next. Three pieces, evaluated in this order after the engine's own prelude and
# the libraries:

# LOADER (sloppy on purpose) evaluates a handler program with a direct eval inside a function,
# so its `var`s, functions and top-level `let`/`const` live in that call's scope, not in the
# shared global scope (where a second `const x` would not even compile). The trailing `var`
# statement hands `transform` over without changing the program's completion value (a `var`
# statement has none). `eval` is the real one while the program's top level runs (for the
# program's own direct evals) and the scoped one afterwards.
LOADER = """(function (realEval) {
  let scoped;
  const $lam_scoped = function (eval, $lam_code) {
    try { return eval($lam_code); } finally { eval = scoped; }
  };
  scoped = function eval(code) { return $lam_scoped(realEval, code); };
  globalThis.eval = scoped;
  return function $lam_load($lam_source, $lam_register) {
    var eval = realEval;
    try {
      return eval($lam_source +
        "\\n;var $lam_unused = $lam_register(typeof transform === 'function' ? transform : undefined);");
    } finally {
      eval = scoped;
    }
  };
})"""

# HARDEN deep-freezes everything reachable from the global object (built-ins, `_`, `format`,
# `parseISO`, `console`), SES-style, so no call can change what the next one sees. The global
# object itself stays extensible (a sloppy `x = 1` still works) with its own properties made
# read-only; CLEAN deletes what a call added. Freezing has one trap, the "override mistake":
# `obj.toString = f` fails when Object.prototype.toString is frozen, which would break ordinary
# code (an Error subclass setting `this.name`, `_.assign({}, {constructor: 1})`). So the usual
# overridden properties of built-in prototypes become accessors whose setter defines the
# property on the object written to, as assignment would have. Returns CLEAN: true when the
# realm can serve another call, false when a call made that impossible (a global that cannot
# be deleted, a non-extensible global object).
# The deep freeze both kinds of realm use (conditions' and handlers'): `harden(o)` freezes `o`,
# what its own properties reach (values, getters, setters) and its prototype chain, each object
# once (`seen`). It reads `freeze`, `ownKeys`, `describe` and `proto` from the code around it.
HARDEN_FUNCTION = """\
  const seen = new WeakSet();
  const harden = (o) => {
    if ((typeof o !== "object" && typeof o !== "function") || o === null || seen.has(o)) return;
    seen.add(o);
    freeze(o);
    for (const key of ownKeys(o)) {
      const d = describe(o, key);
      if (d === undefined) continue;
      if ("value" in d) harden(d.value); else { harden(d.get); harden(d.set); }
    }
    harden(proto(o));
  };
"""

HARDEN = (
    """(() => {
  "use strict";
  const { freeze, defineProperty, getOwnPropertyDescriptor: describe, getPrototypeOf: proto,
    isExtensible } = Object;
  const ownKeys = Reflect.ownKeys, deleteProperty = Reflect.deleteProperty;
  const OVERRIDDEN = ["constructor", "toString", "valueOf", "toLocaleString", "toJSON",
    "hasOwnProperty", "isPrototypeOf", "propertyIsEnumerable", "name", "message"];
  const tame = (target) => {
    for (const key of OVERRIDDEN) {
      const d = describe(target, key);
      if (d === undefined || !("value" in d) || !d.writable || !d.configurable) continue;
      const value = d.value;
      defineProperty(target, key, {
        enumerable: d.enumerable, configurable: false,
        get: function $lam_get() { return value; },
        set: function $lam_set(v) {
          if (this === target) {
            throw new TypeError("Cannot assign to read only property '" + key +
              "' of a shared built-in (built-ins and preloaded libraries are frozen)");
          }
          if (Object(this) === this) {
            defineProperty(this, key, { value: v, writable: true, enumerable: true,
              configurable: true });
          }
        },
      });
    }
  };
  tame(Object.prototype);
  for (const key of ownKeys(globalThis)) {
    const d = describe(globalThis, key), C = d.value;
    if (typeof C === "function" && C.prototype !== null &&
        (typeof C.prototype === "object" || typeof C.prototype === "function")) tame(C.prototype);
  }
"""
    + HARDEN_FUNCTION
    + """  seen.add(globalThis);
  for (const key of ownKeys(globalThis)) {
    const d = describe(globalThis, key);
    if ("value" in d) {
      defineProperty(globalThis, key, { writable: false, configurable: false });
      harden(d.value);
    } else {
      defineProperty(globalThis, key, { configurable: false });
      harden(d.get); harden(d.set);
    }
  }
  harden(proto(globalThis));
  const base = new Set(ownKeys(globalThis)), count = base.size;
  return function $lam_clean() {
    if (!isExtensible(globalThis)) return false;
    const now = ownKeys(globalThis);
    if (now.length === count) return true;  // nothing added: the base ones cannot be deleted
    for (const key of now) if (!base.has(key) && !deleteProperty(globalThis, key)) return false;
    return true;
  };
})()"""
)
