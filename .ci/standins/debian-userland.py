#!/usr/bin/env python3
"""Lay out a minimal Debian userland taken from the host's own dpkg database.

Used by .ci/testbed to make the rust:*-slim-bookworm stand-in image without
pulling anything: the dependency closure of the Essential/required packages
plus the extra packages named on the command line is computed from
/var/lib/dpkg/status, and

  * the list of host paths to copy (canonical, merged-/usr, NUL separated,
    relative to /) is written to --file-list (for `tar --null -T`);
  * a dpkg/apt database describing exactly those packages (status, info
    files, alternatives, triggers, diversions, statoverride) is written
    under --dest, which is the staging root of the image.

Documentation, man pages, info pages and translations are left out, like
the "slim" Debian images do.
"""
import argparse
import os
import re
import shutil
import sys

DPKG = "/var/lib/dpkg"
EXCLUDE = (
    "usr/share/doc/",
    "usr/share/man/",
    "usr/share/info/",
    "usr/share/lintian/",
    "usr/share/linda/",
    "usr/share/locale/",
)
KEEP_EVEN_IF_EXCLUDED = {"usr/share/locale/locale.alias"}
# Host files that maintainer scripts or the installer create (not in any
# package's file list) but that a usable Debian userland needs.
EXTRA_PATHS = (
    "/etc/ssl/certs",
    "/etc/shells",
    "/etc/localtime",
    "/etc/timezone",
    "/etc/mtab",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d/debian.sources",
    "/etc/apt/apt.conf.d/docker-clean",
    "/etc/apt/apt.conf.d/docker-autoremove-suggests",
    "/etc/apt/apt.conf.d/docker-gzip-indexes",
    "/etc/apt/apt.conf.d/docker-no-languages",
    "/var/cache/debconf/config.dat",
    "/var/cache/debconf/templates.dat",
    "/usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache",
)
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def paragraphs(path):
    with open(path, encoding="utf-8") as f:
        for para in f.read().split("\n\n"):
            if para.strip():
                yield para.strip("\n")


def fields(para):
    out, key = {}, None
    for line in para.split("\n"):
        if line[:1] in (" ", "\t") and key:
            out[key] += "\n" + line
        else:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def dep_groups(value):
    for group in filter(None, (g.strip() for g in value.split(","))):
        alts = []
        for alt in group.split("|"):
            m = re.match(r"\s*([^\s(:\[]+)", alt)
            if m:
                alts.append(m.group(1))
        if alts:
            yield alts


def closure(pkgs, provides, seeds):
    chosen, todo = set(), list(seeds)
    while todo:
        name = todo.pop()
        if name in chosen:
            continue
        if name not in pkgs:
            sys.exit(f"debian-userland: package {name} is not installed on the host")
        chosen.add(name)
        f = pkgs[name][0]
        for key in ("Pre-Depends", "Depends"):
            for alts in dep_groups(f.get(key, "")):
                pick = next((a for a in alts if a in chosen), None)
                pick = pick or next((a for a in alts if a in pkgs), None)
                if pick is None:
                    for a in alts:
                        cands = sorted(provides.get(a, ()))
                        if cands:
                            pick = next((c for c in cands if c in chosen), cands[0])
                            break
                if pick is None:
                    sys.exit(f"debian-userland: {name}: cannot satisfy {' | '.join(alts)}")
                todo.append(pick)
    return chosen


def canon(path):
    """Host path -> canonical path relative to / (merged-/usr resolved)."""
    path = os.path.normpath(path)
    if path == "/":
        return None
    parent = os.path.realpath(os.path.dirname(path))
    return os.path.join(parent, os.path.basename(path)).lstrip("/")


def excluded(rel):
    if rel in KEEP_EVEN_IF_EXCLUDED:
        return False
    return any(rel.startswith(e) or rel + "/" == e for e in EXCLUDE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dest", required=True, help="staging root for the dpkg/apt database")
    ap.add_argument("--file-list", required=True, help="output: NUL separated host paths")
    ap.add_argument("packages", nargs="*", help="extra packages (with dependencies)")
    args = ap.parse_args()

    pkgs, provides = {}, {}
    for para in paragraphs(f"{DPKG}/status"):
        f = fields(para)
        if not f.get("Status", "").endswith(" installed"):
            continue
        pkgs[f["Package"]] = (f, para)
        for alts in dep_groups(f.get("Provides", "")):
            provides.setdefault(alts[0], set()).add(f["Package"])
    seeds = [n for n, (f, _) in pkgs.items()
             if f.get("Essential") == "yes" or f.get("Priority") == "required"]
    chosen = closure(pkgs, provides, seeds + args.packages)

    keep = set()

    def add(host_path, recursive=False):
        rel = canon(host_path)
        if rel is None or excluded(rel) or not os.path.lexists("/" + rel):
            return False
        keep.add(rel)
        if recursive and os.path.isdir("/" + rel) and not os.path.islink("/" + rel):
            for root, dirs, files in os.walk("/" + rel):
                for n in dirs + files:
                    add(os.path.join(root, n))
        return True

    info_re = {}
    for n in os.listdir(f"{DPKG}/info"):
        m = re.match(r"^(.+?)(:[a-z0-9]+)?\.([a-z0-9]+)$", n)
        if m:
            info_re.setdefault(m.group(1), []).append(n)

    os.makedirs(f"{args.dest}/var/lib/dpkg/info", exist_ok=True)
    # "format" says the database uses the multiarch "pkg:arch.list" names.
    if os.path.exists(f"{DPKG}/info/format"):
        shutil.copy2(f"{DPKG}/info/format", f"{args.dest}/var/lib/dpkg/info/format")
    for name in sorted(chosen):
        for n in info_re.get(name, []):
            shutil.copy2(f"{DPKG}/info/{n}", f"{args.dest}/var/lib/dpkg/info/{n}")
            if n.endswith(".list"):
                with open(f"{DPKG}/info/{n}", encoding="utf-8") as lf:
                    for line in lf:
                        add(line.rstrip("\n"))
    for p in EXTRA_PATHS:
        add(p, recursive=True)
    for top in MERGED_USR_LINKS:
        if os.path.islink("/" + top):
            keep.add(top)

    # update-alternatives links are made by maintainer scripts: keep those
    # whose current target is part of the image.
    alt_db = f"{DPKG}/alternatives"
    os.makedirs(f"{args.dest}{alt_db}", exist_ok=True)
    for name in sorted(os.listdir(alt_db)):
        with open(f"{alt_db}/{name}", encoding="utf-8") as af:
            lines = af.read().split("\n")
        links = {name: lines[1]}
        i = 2
        while i + 1 < len(lines) and lines[i]:
            links[lines[i]] = lines[i + 1]
            i += 2
        kept_master = False
        for alt, link in links.items():
            etc = f"/etc/alternatives/{alt}"
            if not os.path.islink(etc):
                continue
            target = canon(os.readlink(etc))
            if target in keep:
                keep.add(canon(etc))
                add(link)
                kept_master |= alt == name
        if kept_master:
            shutil.copy2(f"{alt_db}/{name}", f"{args.dest}{alt_db}/{name}")

    # dpkg database restricted to the chosen packages.
    with open(f"{args.dest}/var/lib/dpkg/status", "w", encoding="utf-8") as out:
        for name in sorted(chosen):
            out.write(pkgs[name][1] + "\n\n")
    trig = f"{DPKG}/triggers"
    os.makedirs(f"{args.dest}{trig}", exist_ok=True)
    for n in os.listdir(trig):
        if n in ("Lock", "Unincorp"):
            open(f"{args.dest}{trig}/{n}", "w").close()
            continue
        with open(f"{trig}/{n}", encoding="utf-8") as tf:
            kept = [ln for ln in tf.read().split("\n")
                    if ln and ln.split()[-1].split("/")[0] in chosen]
        if kept:
            with open(f"{args.dest}{trig}/{n}", "w", encoding="utf-8") as out:
                out.write("\n".join(kept) + "\n")
    div = []
    if os.path.exists(f"{DPKG}/diversions"):
        with open(f"{DPKG}/diversions", encoding="utf-8") as df:
            d = df.read().split("\n")
        for i in range(0, len(d) - 2, 3):
            if d[i + 2] in chosen:
                div += d[i:i + 3]
    with open(f"{args.dest}/var/lib/dpkg/diversions", "w", encoding="utf-8") as out:
        out.write("".join(x + "\n" for x in div))
    # Only overrides for kept paths whose user and group exist in the image
    # (.ci/testbed writes /etc/passwd and /etc/group from base-passwd's
    # masters, plus _apt).
    users, groups = {"_apt"}, set()
    for master, names in (("passwd", users), ("group", groups)):
        with open(f"/usr/share/base-passwd/{master}.master", encoding="utf-8") as mf:
            names.update(ln.split(":")[0] for ln in mf if ln.strip())
    so = []
    if os.path.exists(f"{DPKG}/statoverride"):
        with open(f"{DPKG}/statoverride", encoding="utf-8") as sf:
            for ln in sf.read().split("\n"):
                parts = ln.split(" ", 3)
                if (len(parts) == 4 and parts[0] in users and parts[1] in groups
                        and canon(parts[3]) in keep):
                    so.append(ln)
    with open(f"{args.dest}/var/lib/dpkg/statoverride", "w", encoding="utf-8") as out:
        out.write("".join(x + "\n" for x in so))
    for d in ("updates", "parts"):
        os.makedirs(f"{args.dest}/var/lib/dpkg/{d}", exist_ok=True)

    # Every ancestor directory goes in too, so that owners/modes are kept.
    for rel in list(keep):
        parent = os.path.dirname(rel)
        while parent and parent not in keep:
            keep.add(parent)
            parent = os.path.dirname(parent)
    with open(args.file_list, "wb") as out:
        for rel in sorted(keep):
            out.write(rel.encode() + b"\0")
    print(f"{len(chosen)} packages, {len(keep)} paths", file=sys.stderr)


if __name__ == "__main__":
    main()
