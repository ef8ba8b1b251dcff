#!/usr/bin/env bash
# One prepared GPU run of the verify fixtures (budget: under 8 minutes).
#
#   tests/gpu/check.sh [OUT_DIR]          (default OUT_DIR: $OUT or ./gpu-verify-results)
#
# 1. Reference stand-in on CUDA (exact mode): every fixture's rewrite must be PASS-EXACT and
#    up to two mutation twins per fixture must FAIL (exit 1). A fixture with a verify.json
#    (resume) runs with its program arguments and --resume-from checkpoint.
# 2. Real NVIDIA apex, only if `apex.amp` imports here: every fixture in envelope mode
#    (original with apex, rewrite, fp32 run of the original), plus one mutant per fixture.
#    Real-apex verdicts are recorded as evidence; they do not change the exit status.
# Writes env.txt, summary.tsv and one JSON report per run into OUT_DIR. Exit status 1 when
# a stand-in expectation failed, 2 when CUDA is not available.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-${OUT:-gpu-verify-results}}"
PY="${PYTHON:-python3}"
BUDGET="${BUDGET_S:-450}"
STEPS="${STEPS:-20}"
DEVICE="${DEVICE:-cuda}"  # DEVICE=cpu only for a dry run of this script without a GPU
mkdir -p "$OUT/mutants"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

{ nvidia-smi || true; "$PY" - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("gpu", torch.cuda.get_device_name(0))
PY
} > "$OUT/env.txt" 2>&1
if [[ $DEVICE == cuda ]] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "CUDA is not available" | tee -a "$OUT/env.txt"
    exit 2
fi

printf "fixture\tvariant\tapex\texpected\texit\tverdict\n" > "$OUT/summary.tsv"
failures=0

case_args() {  # fixture -> "verify args ... -- program args ..." from its verify.json
    "$PY" - "$1" <<'PY'
import json, sys
from pathlib import Path
case = Path("fixtures/verify") / sys.argv[1]
config = json.loads((case / "verify.json").read_text()) if (case / "verify.json").is_file() else {}
ckpt = str(case / config["resume_from"]) if "resume_from" in config else None
program = [ckpt if ckpt and a == config["resume_from"] else a for a in config.get("args", [])]
print(" ".join((["--resume-from", ckpt] if ckpt else []) + ["--"] + program))
PY
}

twins() {  # fixture -> up to two twin names (the classic pair where the fixture has them)
    "$PY" - "$1" <<'PY'
import json, sys
names = list(json.load(open(f"fixtures/verify/{sys.argv[1]}/mutants.json")))
classic = [n for n in ("step_on_scaled_grads", "outer_autocast") if n in names]
print(" ".join((classic + [n for n in names if n not in classic])[:2]))
PY
}

run_case() {  # fixture variant apex expected rewritten_dir [extra verify args...]
    local fixture=$1 variant=$2 apex=$3 expected=$4 rewritten=$5
    shift 5
    local -a args
    read -r -a args <<< "$(case_args "$fixture")"
    local cut
    for cut in "${!args[@]}"; do [[ ${args[$cut]} == -- ]] && break; done
    if (( SECONDS > BUDGET )); then
        printf "%s\t%s\t%s\t%s\t-\tskipped (time budget)\n" "$fixture" "$variant" "$apex" \
            "$expected" >> "$OUT/summary.tsv"
        return
    fi
    local report="$OUT/$fixture.$variant.$apex.json"
    local log="$OUT/$fixture.$variant.$apex"
    "$PY" -m apex2native.verify "fixtures/verify/$fixture/original" "$rewritten" \
        --steps "$STEPS" --device "$DEVICE" --apex "$apex" --timeout 120 --report "$report" "$@" \
        "${args[@]:0:cut}" -- "$PY" train.py "${args[@]:cut+1}" > "$log.out" 2> "$log.stderr"
    local code=$?
    local line
    line=$(head -n 1 "$log.out")
    printf "%s\t%s\t%s\t%s\t%s\t%s\n" "$fixture" "$variant" "$apex" "$expected" "$code" \
        "$line" >> "$OUT/summary.tsv"
    if [[ $apex == reference && $expected != "$code" ]]; then
        failures=$((failures + 1))
    fi
}

materialize() {  # fixture mutant -> prints the mutated tree (created once)
    local tree="$OUT/mutants/$1-$2"
    if [[ ! -d $tree ]]; then
        "$PY" - "$1" "$2" "$OUT/mutants" > /dev/null <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests/verify")
from verify_helpers import materialize
materialize(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
PY
    fi
    echo "$tree"
}

FIXTURES=(plain clipping accumulation two_models custom_function checkpoint static_scale
          forced_overflow ddp micro_step_clip cuda_style resume)

for fixture in "${FIXTURES[@]}"; do
    run_case "$fixture" rewritten reference 0 "fixtures/verify/$fixture/rewritten"
done
for fixture in "${FIXTURES[@]}"; do
    for mutant in $(twins "$fixture"); do
        run_case "$fixture" "$mutant" reference 1 "$(materialize "$fixture" "$mutant")"
    done
done

if [[ $DEVICE == cuda ]] && "$PY" -c "import apex, apex.amp, sys; sys.exit(1 if getattr(apex, 'A2N_REFERENCE', False) else 0)" \
        2> "$OUT/apex-import.txt"; then
    "$PY" -c "import apex; print('apex', getattr(apex, '__version__', '?'), apex.__file__)" \
        >> "$OUT/env.txt" 2>&1
    for fixture in "${FIXTURES[@]}"; do
        run_case "$fixture" rewritten installed 0 "fixtures/verify/$fixture/rewritten" \
            --compare envelope
        mutant=$(twins "$fixture" | cut -d' ' -f1)
        run_case "$fixture" "$mutant" installed 1 "$(materialize "$fixture" "$mutant")" \
            --compare envelope
    done
else
    echo "real apex: not importable, cuda-apex runs skipped" >> "$OUT/env.txt"
fi

echo "stand-in expectation failures: $failures (elapsed ${SECONDS}s)" | tee -a "$OUT/env.txt"
column -t -s $'\t' "$OUT/summary.tsv" 2>/dev/null || cat "$OUT/summary.tsv"
exit $(( failures > 0 ))
