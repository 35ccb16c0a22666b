"""scripts/check-modules.py finds each kind of module-graph violation it
promises to find, in a scratch tree, and passes a clean one."""
import os
import subprocess
import sys
import tempfile

SRC = os.environ["SK_SOURCE_DIR"]
SCRIPT = os.path.join(SRC, "scripts", "check-modules.py")

MANIFEST = """util||||util.h
proto|util|||proto.h
store|util proto|SQLITE|store_int.h|store.h
"""

CLEAN = {
    "include/smtpkit/util.h": "#include <stddef.h>\n",
    "include/smtpkit/proto.h": '#include "util.h"\n',
    "include/smtpkit/store.h": '#include "proto.h"\n',
    "src/util/util.c": "#include <smtpkit/util.h>\n",
    "src/proto/proto.c": '#include <smtpkit/proto.h>\n#include "proto/proto_int.h"\n',
    "src/proto/proto_int.h": "#include <smtpkit/util.h>\n",
    "src/store/store_int.h": "#include <sqlite3.h>\n",
    "src/store/store.c": '#include "store/store_int.h"\n#include <smtpkit/store.h>\n',
    "tools/cli.c": "#include <smtpkit/store.h>\n",
}

# (what is planted, a file and its text, the words the report must carry)
VIOLATIONS = [
    ("private header of another module", "src/store/x.c", '#include "proto/proto_int.h"\n',
     "private to module proto"),
    ("module not stated", "src/proto/y.c", "#include <smtpkit/store.h>\n",
     "without stating it as a dependency"),
    ("package not stated", "src/util/z.c", "#include <sqlite3.h>\n", "SQLITE"),
    ("public header reaching up", "include/smtpkit/util.h", '#include "store.h"\n',
     "include/smtpkit/util.h:1"),
    ("CLI using a private header", "tools/bad.c", '#include "store/store_int.h"\n',
     "public API only"),
    ("undeclared folder", "src/extra/e.c", "\n", "src/extra"),
    ("unclaimed public header", "include/smtpkit/orphan.h", "\n", "no module claims it"),
]


def make_tree(root, extra=None, manifest=MANIFEST):
    files = dict(CLEAN)
    if extra:
        files[extra[0]] = extra[1]
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    with open(os.path.join(root, "modules.txt"), "w") as f:
        f.write(manifest)


def run(root):
    p = subprocess.run([sys.executable, SCRIPT, os.path.join(root, "modules.txt"), root],
                       capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def main():
    failures = 0
    with tempfile.TemporaryDirectory() as root:
        make_tree(root)
        rc, out = run(root)
        if rc != 0:
            print("clean tree refused:\n" + out)
            failures += 1
    for name, rel, text, words in VIOLATIONS:
        with tempfile.TemporaryDirectory() as root:
            make_tree(root, (rel, text))
            rc, out = run(root)
            if rc != 1 or words not in out:
                print("%s: rc=%d, expected 1 and %r in:\n%s" % (name, rc, words, out))
                failures += 1
    with tempfile.TemporaryDirectory() as root:
        make_tree(root, manifest=MANIFEST.replace("util||||", "util|store|||"))
        rc, out = run(root)
        if rc != 1 or "module cycle" not in out:
            print("cycle not found: rc=%d\n%s" % (rc, out))
            failures += 1
    print("%d failure(s)" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
