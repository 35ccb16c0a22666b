#!/usr/bin/python3
"""Check libsmtpkit's module graph against the includes in the tree.

The build states each module's dependencies (cmake/modules.cmake) and writes
them to a manifest; this script fails when the code disagrees with it:
  - every folder under src/ is a declared module, every module has a folder;
  - the graph has no cycle;
  - a module includes another module's header (public <smtpkit/x.h> or
    private "mod/x.h") only when it states that module as a dependency, and a
    private header only when that module declares it as its internal API;
  - a module includes an outside library's header only when it states the
    package;
  - public headers include only public headers of their module's dependencies;
  - the CLI (tools/) and the examples use the public API only.

usage: check-modules.py MANIFEST SOURCE_DIR
Manifest lines: module|dep dep ...|PACKAGE ...|internal.h ...|public.h ...
"""
import os
import re
import sys

# The outside headers each package brings (first path component or file).
PACKAGE_HEADERS = {
    "OPENSSL": ("openssl/",),
    "LIBEVENT": ("event2/",),
    "CARES": ("ares.h", "ares_dns.h"),
    "SQLITE": ("sqlite3.h",),
    "CRYPT": ("crypt.h",),
    "INIH": ("ini.h",),
    "JANSSON": ("jansson.h",),
    "CURL": ("curl/",),
    "PSL": ("libpsl.h",),
    "IDN2": ("idn2.h",),
    "PCRE2": ("pcre2.h",),
}
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def read_manifest(path):
    mods = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            name, deps, pkgs, api, pub = (line.split("|") + [""] * 5)[:5]
            mods[name] = {
                "deps": set(deps.split()),
                "pkgs": set(pkgs.split()),
                "api": set(api.split()),
                "public": set(pub.split()),
            }
    return mods


def includes(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    for m in INCLUDE_RE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        yield line, m.group(1), m.group(2)


def package_of(header):
    for pkg, prefixes in PACKAGE_HEADERS.items():
        for p in prefixes:
            if (p.endswith("/") and header.startswith(p)) or header == p:
                return pkg
    return None


def find_cycle(mods):
    state = {}

    def visit(m, path):
        state[m] = 1
        for d in sorted(mods[m]["deps"]):
            if d not in mods:
                continue
            if state.get(d) == 1:
                return path + [m, d]
            if d not in state:
                c = visit(d, path + [m])
                if c:
                    return c
        state[m] = 2
        return None

    for m in sorted(mods):
        if m not in state:
            c = visit(m, [])
            if c:
                return c[c.index(c[-1]):]
    return None


def main():
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 64
    mods = read_manifest(sys.argv[1])
    src = sys.argv[2]
    errors = []
    owner = {}  # public header -> module
    for name, m in mods.items():
        for h in m["public"]:
            if h in owner:
                errors.append("include/smtpkit/%s: claimed by %s and %s" % (h, owner[h], name))
            owner[h] = name
        for d in m["deps"]:
            if d not in mods:
                errors.append("module %s: depends on unknown module %s" % (name, d))
        for p in m["pkgs"]:
            if p not in PACKAGE_HEADERS:
                errors.append("module %s: unknown package %s" % (name, p))

    folders = {d for d in os.listdir(os.path.join(src, "src"))
               if os.path.isdir(os.path.join(src, "src", d))}
    for d in sorted(folders - set(mods)):
        errors.append("src/%s: a folder that is not a declared module (cmake/modules.cmake)" % d)
    for d in sorted(set(mods) - folders):
        errors.append("module %s: declared, but src/%s does not exist" % (d, d))
    public_dir = os.path.join(src, "include", "smtpkit")
    for h in sorted(os.listdir(public_dir)):
        if h.endswith(".h") and h not in owner and h != "smtpkit.h":
            errors.append("include/smtpkit/%s: no module claims it" % h)

    cycle = find_cycle(mods)
    if cycle:
        errors.append("module cycle: " + " -> ".join(cycle))

    def check_public(where, line, mod, h):
        if h == "smtpkit.h":
            errors.append("%s:%d: includes the umbrella smtpkit.h; include the module headers it needs"
                          % (where, line))
            return
        o = owner.get(h)
        if o is None:
            errors.append("%s:%d: <smtpkit/%s> is not a public header of any module" % (where, line, h))
        elif o != mod and o not in mods[mod]["deps"]:
            errors.append("%s:%d: %s uses %s (smtpkit/%s) without stating it as a dependency"
                          % (where, line, mod, o, h))

    for mod in sorted(set(mods) & folders):
        folder = os.path.join(src, "src", mod)
        for fn in sorted(os.listdir(folder)):
            if not fn.endswith((".c", ".h")):
                continue
            where = "src/%s/%s" % (mod, fn)
            for line, kind, h in includes(os.path.join(folder, fn)):
                if kind == "<" and h.startswith("smtpkit/"):
                    check_public(where, line, mod, h[len("smtpkit/"):])
                elif kind == "<":
                    pkg = package_of(h)
                    if pkg and pkg not in mods[mod]["pkgs"]:
                        errors.append("%s:%d: <%s> is %s, which module %s does not state"
                                      % (where, line, h, pkg, mod))
                elif "/" in h:
                    other, hdr = h.split("/", 1)
                    if other == mod:
                        if not os.path.exists(os.path.join(folder, hdr)):
                            errors.append("%s:%d: \"%s\" does not exist" % (where, line, h))
                    elif other not in mods:
                        errors.append("%s:%d: \"%s\" is not in a module" % (where, line, h))
                    elif other not in mods[mod]["deps"]:
                        errors.append("%s:%d: %s includes %s's \"%s\" without stating %s as a dependency"
                                      % (where, line, mod, other, h, other))
                    elif hdr not in mods[other]["api"]:
                        errors.append("%s:%d: \"%s\" is private to module %s (not in its internal API)"
                                      % (where, line, h, other))
                elif not os.path.exists(os.path.join(folder, h)):
                    errors.append("%s:%d: \"%s\" is not a header of module %s" % (where, line, h, mod))

    for h in sorted(owner):
        path = os.path.join(public_dir, h)
        if not os.path.exists(path):
            errors.append("include/smtpkit/%s: declared public by %s but missing" % (h, owner[h]))
            continue
        for line, kind, inc in includes(path):
            name = inc[len("smtpkit/"):] if inc.startswith("smtpkit/") else inc
            if kind == '"' or inc.startswith("smtpkit/"):
                check_public("include/smtpkit/" + h, line, owner[h], name)

    for top in ("tools", "examples"):
        for root, _, files in os.walk(os.path.join(src, top)):
            for fn in sorted(files):
                if not fn.endswith((".c", ".h")):
                    continue
                path = os.path.join(root, fn)
                where = os.path.relpath(path, src)
                for line, kind, h in includes(path):
                    if kind == '"' and "/" in h:
                        errors.append("%s:%d: \"%s\" is a private header; %s uses the public API only"
                                      % (where, line, h, top))

    for e in errors:
        print(e)
    if errors:
        print("check-modules: %d problem(s); the module graph is stated in cmake/modules.cmake"
              % len(errors), file=sys.stderr)
        return 1
    print("check-modules: %d modules, includes agree with the stated graph" % len(mods))
    return 0


if __name__ == "__main__":
    sys.exit(main())
