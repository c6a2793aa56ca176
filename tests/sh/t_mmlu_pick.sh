#!/usr/bin/env bash
# t_mmlu_pick.sh — pipelines/mmlu-pick.py, the MMLU questions of sports.mk's side-effect
# measure, on a small MMLU directory written here (and on the real one): the records against
# Python's csv module, the header and worked examples, ids over the file, one-line refusals
# that write nothing.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MP="$ROOT/pipelines/mmlu-pick.py"
D="$T/mmlu"; mkdir -p "$D/test" "$D/dev"
printf '%s\n' 'What is 1+1?,1,2,3,4,B' '"Pick, with a comma",x,y,z,"w ""q""",D' 'Third,a,b,c,d,A' > "$D/test/toy_math_test.csv"
printf '%s\n' 'Dev one?,p,q,r,s,C' 'Dev two?,e,f,g,h,A' > "$D/dev/toy_math_dev.csv"
printf '%s\n' 'Only,1,2,3,4,C' > "$D/test/other_test.csv"
# two subjects in the order given, the first N rows of each, ids 0.. over the file; the
# fields as Python's csv module reads them (quoted comma and quotes kept)
t mmlu_pick_records bash -c "python3 '$MP' --out '$T/a.jsonl' --n 2 '$D' other toy_math &&
  [ \"\$(jq -r '[.id, .subject, .question, .A, .D, .answer] | @tsv' '$T/a.jsonl')\" = \"\$(printf '0\tother\tOnly\t1\t4\tC\n1\ttoy_math\tWhat is 1+1?\t1\t4\tB\n2\ttoy_math\tPick, with a comma\tx\tw \"q\"\tD')\" ]"
# MMLU's header names the subject with spaces; the worked examples are the first K dev rows
# in the format mu-tokenize --mc gives the question after them
t mmlu_pick_context bash -c "python3 '$MP' --out '$T/b.jsonl' --n 1 --shots 2 '$D' toy_math &&
  [ \"\$(jq -r .context '$T/b.jsonl')\" = \"\$(printf 'The following are multiple choice questions (with answers) about toy math.\n\nDev one?\nA. p\nB. q\nC. r\nD. s\nAnswer: C\n\nDev two?\nA. e\nB. f\nC. g\nD. h\nAnswer: A\n\n')\" ]"
t mmlu_pick_no_shots bash -c "python3 '$MP' --out '$T/c.jsonl' --n 9 '$D' toy_math &&
  [ \$(wc -l < '$T/c.jsonl') = 3 ] &&
  [ \"\$(jq -c -s 'map(.context) | unique' '$T/c.jsonl')\" = '[\"The following are multiple choice questions (with answers) about toy math.\\n\\n\"]' ]"
# the real MMLU: every subject's test rows as Python's csv module reads them
if [ -d "$SHARED_DATA/mmlu/test" ]; then
  t mmlu_pick_real bash -c "python3 '$MP' --out '$T/r.jsonl' --n 3 --shots 5 '$SHARED_DATA/mmlu' anatomy high_school_geography &&
    python3 -c '
import csv, json, sys
got = [json.loads(l) for l in open(sys.argv[1])]
want = []
for s in (\"anatomy\", \"high_school_geography\"):
    dev = list(csv.reader(open(sys.argv[2] + \"/dev/\" + s + \"_dev.csv\", newline=\"\")))
    ctx = \"The following are multiple choice questions (with answers) about \" + s.replace(\"_\", \" \") + \".\\n\\n\"
    ctx += \"\".join(\"%s\\nA. %s\\nB. %s\\nC. %s\\nD. %s\\nAnswer: %s\\n\\n\" % tuple(r) for r in dev[:5])
    for r in list(csv.reader(open(sys.argv[2] + \"/test/\" + s + \"_test.csv\", newline=\"\")))[:3]:
        want.append(dict(id=len(want), subject=s, context=ctx, question=r[0], A=r[1], B=r[2], C=r[3], D=r[4], answer=r[5]))
sys.exit(got != want)' '$T/r.jsonl' '$SHARED_DATA/mmlu'"
else
  skip mmlu_pick_real "no mmlu under $SHARED_DATA"
fi
# refusals: one line naming the file (and row), exit 1, no output file
refused() { local name=$1 pat=$2; shift 2
  expect_fail "$name" 1 "$pat" python3 "$MP" --out "$T/out.jsonl" "$@"
  [ ! -e "$T/out.jsonl" ] && [ -z "$(ls -A "$T" | grep '^\.mmlu-pick\.')" ] || fail "$name-nothing" "output left"; }
refused mmlu_pick_missing_subject "^mmlu-pick.py: $D/test/nope_test.csv: no such file\$" --n 2 "$D" toy_math nope
refused mmlu_pick_bad_subject "^mmlu-pick.py: $D: subject \"\.\./x\" is not a subject's name" --n 2 "$D" ../x
printf '%s\n' 'Q,1,2,3,B' > "$D/test/short_test.csv"
refused mmlu_pick_short_row "^mmlu-pick.py: $D/test/short_test.csv: row 0: 5 fields, not 6" --n 2 "$D" short
printf '%s\n' 'Q,1,2,3,4,B' 'R,1,2,3,4,E' > "$D/test/letter_test.csv"
refused mmlu_pick_bad_answer "^mmlu-pick.py: $D/test/letter_test.csv: row 1: answer \"E\" is not A, B, C or D" --n 2 "$D" letter
printf 'Q\377,1,2,3,4,B\n' > "$D/test/utf_test.csv"
refused mmlu_pick_invalid_utf8 "^mmlu-pick.py: $D/test/utf_test.csv: 'utf-8' codec can't decode byte 0xff" --n 2 "$D" utf
printf '"Q,1,2,3,4,B\n' > "$D/test/quote_test.csv"
refused mmlu_pick_malformed_csv "^mmlu-pick.py: $D/test/quote_test.csv: " --n 2 "$D" quote
refused mmlu_pick_few_dev "^mmlu-pick.py: $D/dev/toy_math_dev.csv: 2 dev questions, fewer than the 3 worked examples" --n 2 --shots 3 "$D" toy_math
refused mmlu_pick_no_dev "^mmlu-pick.py: $D/dev/other_dev.csv: no such file" --n 2 --shots 1 "$D" other
refused mmlu_pick_twice "^mmlu-pick.py: $D: a subject is listed twice" --n 2 "$D" toy_math other toy_math
expect_fail mmlu_pick_usage_n 2 "^usage: mmlu-pick.py --out FILE --n N" python3 "$MP" --out "$T/u.jsonl" --n 0 "$D" toy_math
expect_fail mmlu_pick_usage_subject 2 "^usage: mmlu-pick.py" python3 "$MP" --out "$T/u.jsonl" --n 2 "$D"
expect_fail mmlu_pick_out_dir_missing 1 "^mmlu-pick.py: $T/no/dir/m.jsonl: No such file or directory" \
  python3 "$MP" --out "$T/no/dir/m.jsonl" --n 2 "$D" toy_math
