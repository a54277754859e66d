"""Reference cycles of a running process, named: the garbage a collection finds, split into
strongly connected components (Tarjan), each described by its members' kinds and the edges
between them (attribute, key, local or closure variable that holds the next). Used by
sitecustomize.py on SIGUSR2; any process can call `report()` on what gc.DEBUG_SAVEALL kept."""

# ruff: noqa
# mypy: ignore-errors

from __future__ import annotations

import collections
import gc
import sys


def components(garbage):
    ids = {id(o): o for o in garbage}
    edges = {i: [id(r) for r in gc.get_referents(o) if id(r) in ids] for i, o in ids.items()}
    sys.setrecursionlimit(100000)
    index = {}
    low = {}
    stack = []
    on = set()
    out = []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append([ids[i] for i in comp])

    for v in ids:
        if v not in index:
            strong(v)
    return [c for c in out if len(c) > 1 or id(c[0]) in edges[id(c[0])]]


def describe(o):
    t = type(o)
    name = f"{t.__module__}.{t.__qualname__}"
    if t.__name__ == "frame":
        return f"frame {o.f_code.co_filename}:{o.f_lineno} {o.f_code.co_name}"
    if t.__name__ == "function":
        return f"function {o.__module__}.{o.__qualname__}"
    if t.__name__ == "cell":
        try:
            return f"cell -> {type(o.cell_contents).__qualname__}"
        except ValueError:
            return "cell empty"
    if t.__name__ in ("coroutine", "async_generator", "generator"):
        return f"{t.__name__} {o.__qualname__}"
    if t.__name__ == "method":
        return f"method {type(o.__self__).__qualname__}.{o.__func__.__name__}"
    if isinstance(o, BaseException):
        return f"exception {name}: {str(o)[:80]}"
    if t.__name__ == "traceback":
        return f"traceback {o.tb_frame.f_code.co_filename}:{o.tb_lineno}"
    return name


def report(garbage, path, requests):
    comps = components(garbage)
    sig = collections.Counter()
    example = {}
    for c in comps:
        key = tuple(sorted(collections.Counter(describe(o) for o in c).items()))
        sig[key] += 1
        example.setdefault(key, c)
    with open(path, "w") as f:
        f.write(f"{len(garbage)} garbage objects, {len(comps)} cycles, {requests} requests\n")
        for key, n in sig.most_common():
            f.write(f"\n### x{n} ({sum(k for _, k in key)} objects)\n")
            for d, k in key:
                f.write(f"  {k} {d}\n")
            # edges of the example
            c = example[key]
            cid = {id(o) for o in c}
            f.write("  edges:\n")
            for o in c:
                for r in gc.get_referents(o):
                    if id(r) in cid:
                        f.write(f"    {describe(o)} -> {describe(r)}{attr(o, r)}\n")
    return comps


def attr(o, r):
    d = getattr(o, "__dict__", None)
    if isinstance(o, dict):
        for k, v in o.items():
            if v is r:
                return f"  [key {k!r}]"
    if isinstance(d, dict):
        for k, v in d.items():
            if v is r:
                return f"  [.{k}]"
    for slot in getattr(type(o), "__slots__", ()) or ():
        if getattr(o, slot, None) is r:
            return f"  [.{slot}]"
    if type(o).__name__ == "frame":
        for k, v in o.f_locals.items():
            if v is r:
                return f"  [local {k}]"
    if type(o).__name__ == "function" and o.__closure__:
        for name, cell in zip(o.__code__.co_freevars, o.__closure__):
            if cell is r:
                return f"  [free {name}]"
    return ""
