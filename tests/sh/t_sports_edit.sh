#!/usr/bin/env bash
# t_sports_edit.sh — pipelines/sports-edit.py, the edit targets of sports.mk's EDIT_TO, on
# small CSVs written here: the sports a target adds to the choices, the facts with each new
# sport's index, and one-line refusals that write nothing.
. "$(dirname "$0")/lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SE="$ROOT/pipelines/sports-edit.py"
C="$T/facts.csv"
printf '%s\n' 'athlete,sport,sport_index,new,bad,own' '"Ann, B",football,2,tennis,golf,baseball' \
  'Cy D,baseball,0,golf,"two words",baseball' 'Ed F,baseball,0,football,golf,golf' > "$C"
# the choices: the three sports, then the targets' others in the order of their first row
t sports_edit_extra_column bash -c "[ \"\$(python3 '$SE' --extra @new '$C')\" = 'tennis golf' ]"
t sports_edit_extra_sport bash -c "[ \"\$(python3 '$SE' --extra golf '$C')\" = 'golf' ]"
t sports_edit_extra_none bash -c "printf '%s\n' athlete,sport,x 'A,football,basketball' > '$T/three.csv' &&
  [ \"\$(python3 '$SE' --extra @x '$T/three.csv')\" = '' ]"
# every row, its fields as read (the quoted comma kept), the new sport and its index among
# baseball, basketball, football, tennis, golf
t sports_edit_jsonl bash -c "python3 '$SE' --out '$T/e.jsonl' @new '$C' &&
  [ \"\$(jq -r '[.athlete, .sport, .edit_to, .edit_index, .own] | @tsv' '$T/e.jsonl')\" = \"\$(printf 'Ann, B\tfootball\ttennis\t3\tbaseball\nCy D\tbaseball\tgolf\t4\tbaseball\nEd F\tbaseball\tfootball\t2\tgolf')\" ]"
t sports_edit_jsonl_bom bash -c "printf '\357\273\277athlete,sport\nA,football\n' > '$T/bom.csv' &&
  python3 '$SE' --out '$T/bom.jsonl' golf '$T/bom.csv' && [ \"\$(jq -r '.athlete + \" \" + (.edit_index | tostring)' '$T/bom.jsonl')\" = 'A 3' ]"
# refusals: one line naming the file (and row), exit 1, no output file
refused() { local name=$1 pat=$2; shift 2
  expect_fail "$name" 1 "$pat" python3 "$SE" --out "$T/out.jsonl" "$@"
  [ ! -e "$T/out.jsonl" ] && [ -z "$(ls -A "$T" | grep '^\.sports-edit\.')" ] || fail "$name-nothing" "output left"; }
refused sports_edit_own_sport "^sports-edit.py: $C: EDIT_TO=baseball: the edit needs a sport none of the athletes plays" baseball "$C"
refused sports_edit_own_sport_row "^sports-edit.py: $C: row 1: edit target \"baseball\" is the athlete's own sport" @own "$C"
refused sports_edit_no_column "^sports-edit.py: $C: EDIT_TO=@gone: no column 'gone'" @gone "$C"
refused sports_edit_bad_name "^sports-edit.py: $C: row 1: edit target \"two words\" is not a sport's name" @bad "$C"
refused sports_edit_bad_sport "^sports-edit.py: $C: row 0: edit target \"a\|b\" is not a sport's name" 'a|b' "$C"
printf '%s\n' 'athlete,sport,new' 'A,football,' > "$T/empty.csv"
refused sports_edit_empty_target "^sports-edit.py: $T/empty.csv: row 0: edit target \"\" is not a sport's name" @new "$T/empty.csv"
printf '%s\n' 'name,sport' 'A,football' > "$T/noathlete.csv"
refused sports_edit_no_athlete "^sports-edit.py: $T/noathlete.csv: no column 'athlete'" golf "$T/noathlete.csv"
printf 'athlete,sport\nA,foot\377ball\n' > "$T/utf8.csv"
refused sports_edit_invalid_utf8 "^sports-edit.py: $T/utf8.csv: 'utf-8' codec can't decode byte 0xff" golf "$T/utf8.csv"
printf 'athlete,sport\n"A,football\n' > "$T/quote.csv"
refused sports_edit_malformed_csv "^sports-edit.py: $T/quote.csv: " golf "$T/quote.csv"
printf '%s\n' athlete,sport,new A,football,s1 B,football,s2 C,football,s3 D,football,s4 E,football,s5 F,football,s6 > "$T/many.csv"
refused sports_edit_too_many "^sports-edit.py: $T/many.csv: the edit targets make 9 choices; at most 8" @new "$T/many.csv"
refused sports_edit_missing_file "^sports-edit.py: $T/none.csv: .*No such file" golf "$T/none.csv"
expect_fail sports_edit_out_dir_missing 1 "^sports-edit.py: $T/no/dir/e.jsonl: No such file or directory" \
  python3 "$SE" --out "$T/no/dir/e.jsonl" golf "$C"
expect_fail sports_edit_usage 2 "^usage: sports-edit.py --extra TARGET CSV" python3 "$SE" --extra golf
