#!/usr/bin/env python3
"""mmlu-pick.py — the MMLU questions of pipelines/sports.mk's side-effect measure.

  mmlu-pick.py --out FILE --n N [--shots K] DIR SUBJECT...

DIR is MMLU's directory (test/SUBJECT_test.csv, dev/SUBJECT_dev.csv: question, the options
A-D and the answer letter, no header row). For each SUBJECT in the order given, the first N
test questions (all of them when it has fewer) become a JSON Lines record each:

  id       the record's index over the whole file (0, 1, ...: mu-tokenize --id-field id, so
           that the subjects' questions have ids of their own and pair across models)
  subject  the subject's name, e.g. high_school_geography
  context  MMLU's header, "The following are multiple choice questions (with answers) about
           high school geography.\\n\\n", then K worked examples, the subject's first K dev
           questions each as "question\\nA. ..\\nB. ..\\nC. ..\\nD. ..\\nAnswer: X\\n\\n"
           (the format of mu-tokenize --mc, which puts the options and "Answer:" after the
           prompt '{context}{question}')
  question, A, B, C, D, answer   the row's fields

Written atomically. A missing subject file, a row without 6 fields, an answer that is not
A-D, a subject with fewer than K dev questions, invalid UTF-8 or malformed CSV: one line
naming the file (and row), exit 1, nothing written. Exit 2: usage.
"""
import csv
import json
import os
import re
import sys
import tempfile

FIELDS = ["question", "A", "B", "C", "D", "answer"]
SUBJECT = re.compile(r"[a-z0-9_]+\Z")


class PickError(Exception):
    pass


def read_questions(path):
    """The rows of an MMLU CSV as dicts of FIELDS, checked."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f, strict=True))
    except FileNotFoundError:
        raise PickError(f"{path}: no such file")
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise PickError(f"{path}: {e}")
    out = []
    for i, r in enumerate(rows):
        if len(r) != len(FIELDS):
            raise PickError(f"{path}: row {i}: {len(r)} fields, not {len(FIELDS)} (question, A, B, C, D, answer)")
        if r[5] not in ("A", "B", "C", "D"):
            raise PickError(f"{path}: row {i}: answer {json.dumps(r[5])} is not A, B, C or D")
        out.append(dict(zip(FIELDS, r)))
    return out


def worked_example(q):
    return "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer: {}\n\n".format(*(q[f] for f in FIELDS))


def subject_records(root, subject, n, shots):
    if not SUBJECT.match(subject):
        raise PickError(f"{root}: subject {json.dumps(subject)} is not a subject's name (e.g. high_school_geography)")
    context = "The following are multiple choice questions (with answers) about {}.\n\n".format(
        subject.replace("_", " "))
    if shots:
        dev_path = os.path.join(root, "dev", subject + "_dev.csv")
        dev = read_questions(dev_path)
        if len(dev) < shots:
            raise PickError(f"{dev_path}: {len(dev)} dev questions, fewer than the {shots} worked examples asked for")
        context += "".join(worked_example(q) for q in dev[:shots])
    test = read_questions(os.path.join(root, "test", subject + "_test.csv"))
    for q in test[:n]:
        rec = {"subject": subject, "context": context}
        rec.update(q)
        yield rec


def write_jsonl(path, records):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".mmlu-pick.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for i, rec in enumerate(records):
                f.write(json.dumps(dict(id=i, **rec), ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def parse_args(argv):
    """(out, n, shots, root, subjects), or None on a usage error."""
    out, n, shots, rest = None, None, 0, []
    i = 1
    while i < len(argv):
        a = argv[i]
        if a in ("--out", "--n", "--shots"):
            if i + 1 == len(argv):
                return None
            v = argv[i + 1]
            if a == "--out":
                out = v
            else:
                if not v.isdigit():
                    return None
                if a == "--n":
                    n = int(v)
                else:
                    shots = int(v)
            i += 2
        else:
            rest.append(a)
            i += 1
    if out is None or n is None or n < 1 or len(rest) < 2:
        return None
    return out, n, shots, rest[0], rest[1:]


def main(argv):
    args = parse_args(argv)
    if args is None:
        sys.stderr.write("usage: mmlu-pick.py --out FILE --n N [--shots K] DIR SUBJECT...\n")
        return 2
    out, n, shots, root, subjects = args
    if len(set(subjects)) != len(subjects):
        sys.stderr.write(f"mmlu-pick.py: {root}: a subject is listed twice\n")
        return 1
    try:
        records = [r for s in subjects for r in subject_records(root, s, n, shots)]
        write_jsonl(out, records)
    except PickError as e:
        sys.stderr.write(f"mmlu-pick.py: {e}\n")
        return 1
    except OSError as e:
        sys.stderr.write(f"mmlu-pick.py: {out}: {e.strerror}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
