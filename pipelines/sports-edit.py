#!/usr/bin/env python3
"""sports-edit.py — the edit targets of pipelines/sports.mk's editing (EDIT_TO).

  sports-edit.py --extra TARGET CSV       the sports the edit adds to the choices
  sports-edit.py --out FILE TARGET CSV    the facts as JSON Lines with their edit's answer

TARGET is a sport (every fact is edited to it: e.g. golf) or @COLUMN, a column of CSV holding
each athlete's new sport (Sports Facts' pre-drawn targets: @inject_sport_without_golf, another
of the three sports; @inject_sport_with_golf, another of the four, golf among them).

The choices are baseball, basketball, football (sport_index 0, 1, 2), then the sports the
targets bring that are not among them, in the order of their first row. --extra prints
those, separated by spaces. --out writes every row of CSV (all of its fields, the same
order, so mu-tokenize --rows picks the same facts and ids) with "edit_index", the target's
index among the choices, and "edit_to", its name; written atomically.

A sport's name is letters, digits and hyphens; rows count from 0, the first after the
header. A target that is the athlete's own sport, an empty or malformed one, a missing
column, more than 8 choices, invalid UTF-8 or malformed CSV: one line naming the file (and
row), exit 1, nothing written. Exit 2: usage.
"""
import csv
import json
import os
import re
import sys
import tempfile

SPORTS = ["baseball", "basketball", "football"]
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*\Z")
MAX_CHOICES = 8


class EditError(Exception):
    pass


def read_rows(path):
    """The rows of the CSV at path, as dicts; the header's columns."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, strict=True)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise EditError(f"{path}: {e}")
    for col in ("athlete", "sport"):
        if col not in columns:
            raise EditError(f"{path}: no column '{col}'")
    return rows, columns


def targets(rows, columns, target, path):
    """Each row's new sport, checked: a name, and not the athlete's own sport."""
    if target.startswith("@"):
        col = target[1:]
        if col not in columns:
            raise EditError(f"{path}: EDIT_TO={target}: no column '{col}'")
        out = [r.get(col) or "" for r in rows]
    else:
        if target in SPORTS:
            raise EditError(f"{path}: EDIT_TO={target}: the edit needs a sport none of the athletes plays, "
                            f"not one of {', '.join(SPORTS)}")
        out = [target] * len(rows)
    for i, (r, t) in enumerate(zip(rows, out)):
        if not NAME.match(t):
            raise EditError(f"{path}: row {i}: edit target {json.dumps(t)} is not a sport's name (letters, digits, hyphens)")
        if t == r["sport"]:
            raise EditError(f"{path}: row {i}: edit target {json.dumps(t)} is the athlete's own sport")
    return out


def choices(new, path):
    """The three sports, then the targets' others in the order of their first row."""
    c = list(SPORTS)
    for t in new:
        if t not in c:
            c.append(t)
    if len(c) > MAX_CHOICES:
        raise EditError(f"{path}: the edit targets make {len(c)} choices; at most {MAX_CHOICES}")
    return c


def write_jsonl(path, rows, new, choice):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".sports-edit.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for r, t in zip(rows, new):
                rec = dict(r)
                rec["edit_to"] = t
                rec["edit_index"] = choice.index(t)
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    if len(argv) == 4 and argv[1] == "--extra":
        target, path, out = argv[2], argv[3], None
    elif len(argv) == 5 and argv[1] == "--out":
        out, target, path = argv[2], argv[3], argv[4]
    else:
        sys.stderr.write("usage: sports-edit.py --extra TARGET CSV | --out FILE TARGET CSV\n")
        return 2
    try:
        rows, columns = read_rows(path)
        new = targets(rows, columns, target, path)
        choice = choices(new, path)
        if out is None:
            print(" ".join(choice[len(SPORTS):]))
        else:
            write_jsonl(out, rows, new, choice)
    except EditError as e:
        sys.stderr.write(f"sports-edit.py: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"sports-edit.py: {out}: {e.strerror}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
