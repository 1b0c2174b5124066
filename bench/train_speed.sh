#!/usr/bin/env bash
# Training tokens/s of gemma.c (build/bench/train_bench) against PyTorch (bench/train_torch.py, Debian's
# python3-torch) on the same config, batch and step (forward + backward + clip + AdamW, f32), runs
# alternating per config and thread count, then one markdown table with the ratios gemma.c / torch.
#
# usage: bench/train_speed.sh [-t 1,2] [--configs 10m,100m] [-n 3] [-w 1] [--rounds 1] [--blas system,openblas]
#                             [--no-check] [--no-mpi]
# Configs (Gemma 1, seq 256): 10m = d 256, 8 layers, MQA 4/1 hd 64, ffn 1024, vocab 8192, batch 4;
# 100m = d 768, 12 layers, MQA 12/1 hd 64, ffn 3072, vocab 16384, batch 1; tiny (a smoke test) = d 64.
# torch runs with the BLAS Debian gives it (libblas.so.3 = netlib's reference BLAS unless another
# alternative is installed: "system") and with OpenBLAS ("openblas": Debian's libopenblas0-pthread, taken
# from OPENBLAS_DIR, a folder holding its libblas.so.3, or unpacked once with apt-get download into
# ${XDG_CACHE_HOME:-$HOME/.cache}/gemma.c/openblas, never installed). With --rounds K each cell is the best
# of K runs. First, unless --no-check, both replay the same steps from gemma.c's init and tokens
# (train_bench --dump, train_torch.py --check): the first-step losses must agree within 1e-5. When
# train_bench is an MPI build and mpirun exists, an extra table gives np 1 vs np 2 (1 thread each).
# TRAIN_BENCH names the binary (default build/bench/train_bench), PYTHON the interpreter (/usr/bin/python3).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
TRAIN_BENCH=${TRAIN_BENCH:-$root/build/bench/train_bench}
PYTHON=${PYTHON:-/usr/bin/python3}
threads=1,2 configs=10m,100m steps=3 warmup=1 rounds=1 blas=system,openblas check=1 mpi=1
usage() { sed -n 6,19p "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
    case $1 in
        -t) threads=$2; shift 2 ;;
        --configs) configs=$2; shift 2 ;;
        -n) steps=$2; shift 2 ;;
        -w) warmup=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --blas) blas=$2; shift 2 ;;
        --no-check) check=0; shift ;;
        --no-mpi) mpi=0; shift ;;
        -h|--help) usage ;;
        *) echo "train_speed.sh: unknown option '$1'" >&2; usage ;;
    esac
done
[ -x "$TRAIN_BENCH" ] || { echo "train_speed.sh: $TRAIN_BENCH not built (run make)" >&2; exit 1; }
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "train_speed.sh: $PYTHON has no torch (apt-get install python3-torch)" >&2; exit 1; }

config_flags() {
    case $1 in
        10m) echo "-d 256 -l 8 --heads 4 --kv-heads 1 --head-dim 64 --ffn 1024 --vocab 8192 -s 256 -b 4" ;;
        100m) echo "-d 768 -l 12 --heads 12 --kv-heads 1 --head-dim 64 --ffn 3072 --vocab 16384 -s 256 -b 1" ;;
        tiny) echo "-d 64 -l 2 --heads 4 --kv-heads 1 --head-dim 16 --ffn 128 --vocab 256 -s 16 -b 2" ;;
        *) return 1 ;;
    esac
}
for c in ${configs//,/ }; do
    config_flags "$c" >/dev/null || { echo "train_speed.sh: unknown config '$c' (10m, 100m, tiny)" >&2; exit 2; }
done

# OpenBLAS for torch without touching the system's BLAS alternative: a private copy on LD_LIBRARY_PATH.
openblas_dir=
if [[ ",$blas," == *,openblas,* ]]; then
    if [ -n "${OPENBLAS_DIR:-}" ]; then
        openblas_dir=$OPENBLAS_DIR
    else
        cache=${XDG_CACHE_HOME:-$HOME/.cache}/gemma.c/openblas
        openblas_dir=$cache/root/usr/lib/x86_64-linux-gnu/openblas-pthread
        if [ ! -f "$openblas_dir/libblas.so.3" ]; then
            mkdir -p "$cache"
            (cd "$cache" && apt-get download libopenblas0-pthread >/dev/null 2>&1 &&
                dpkg-deb -x libopenblas0-pthread_*.deb root) || true
            [ -f "$openblas_dir/libblas.so.3" ] || openblas_dir=$(find "$cache/root" -name libblas.so.3 -path '*openblas*' -printf '%h\n' 2>/dev/null | head -n 1)
        fi
    fi
    if [ -z "$openblas_dir" ] || [ ! -f "$openblas_dir/libblas.so.3" ]; then
        echo "train_speed.sh: no OpenBLAS (set OPENBLAS_DIR to a folder with its libblas.so.3); torch runs with the system BLAS only" >&2
        openblas_dir=
    fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
res=$tmp/results.jsonl
: >"$res"
load() { cut -d' ' -f1-3 /proc/loadavg; }
tag() { "$PYTHON" -c 'import json,sys; d=json.loads(sys.stdin.readline()); d.update(json.loads(sys.argv[1])); print(json.dumps(d))' "$1"; }

run_gemma() { # config threads
    local out
    out=$("$TRAIN_BENCH" $(config_flags "$1") -t "$2" -n "$steps" -w "$warmup" --json 2>"$tmp/err") || { cat "$tmp/err" >&2; exit 1; }
    echo "$out" | tag "{\"config\": \"$1\", \"engine\": \"gemma.c\"}" >>"$res"
    echo "  gemma.c $1 t$2: $(echo "$out" | grep -o '"tok_s": [0-9.]*')" >&2
}
run_torch() { # config threads system|openblas
    local out
    if [ "$3" = openblas ]; then
        out=$(LD_LIBRARY_PATH="$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PYTHON" "$here/train_torch.py" \
            $(config_flags "$1") -t "$2" -n "$steps" -w "$warmup" --json 2>"$tmp/err") || { cat "$tmp/err" >&2; exit 1; }
    else
        out=$("$PYTHON" "$here/train_torch.py" $(config_flags "$1") -t "$2" -n "$steps" -w "$warmup" --json 2>"$tmp/err") ||
            { cat "$tmp/err" >&2; exit 1; }
    fi
    echo "$out" | tag "{\"config\": \"$1\", \"engine\": \"torch-$3\"}" >>"$res"
    echo "  torch ($3) $1 t$2: $(echo "$out" | grep -o '"tok_s": [0-9.]*')" >&2
}

echo "train_speed: configs $configs, threads $threads, $warmup warm-up + $steps timed steps, $rounds round(s); load $(load)" >&2
if [ "$check" = 1 ]; then
    for c in ${configs//,/ }; do
        rm -rf "$tmp/dump"
        "$TRAIN_BENCH" $(config_flags "$c") -n 2 -w 0 --dump "$tmp/dump" >/dev/null 2>&1 || { echo "train_speed.sh: train_bench --dump failed" >&2; exit 1; }
        line=$(LD_LIBRARY_PATH="$openblas_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$PYTHON" "$here/train_torch.py" --check "$tmp/dump" | tail -n 1) ||
            { echo "train_speed.sh: $c: $line" >&2; exit 1; }
        echo "loss check $c (same init and tokens): $line" >&2
        echo "{\"config\": \"$c\", \"engine\": \"check\", \"line\": \"$line\"}" >>"$res"
    done
fi
load_start=$(load)
for ((k = 1; k <= rounds; k++)); do
    for c in ${configs//,/ }; do
        for t in ${threads//,/ }; do
            run_gemma "$c" "$t"
            if [[ ",$blas," == *,system,* ]]; then run_torch "$c" "$t" system; fi
            if [ -n "$openblas_dir" ]; then run_torch "$c" "$t" openblas; fi
        done
    done
done
load_end=$(load)

# MPI: np 1 vs np 2, 1 thread each, the batch split over the data ranks (so 100m runs at batch 2 here).
if [ "$mpi" = 1 ] && command -v mpirun >/dev/null &&
    [ "$("$TRAIN_BENCH" -d 64 -l 1 --vocab 64 -s 4 -b 1 -n 1 -w 0 --json 2>/dev/null | grep -o '"mpi": [01]')" = '"mpi": 1' ]; then
    mpiflags=()
    [ "$(id -u)" = 0 ] && mpirun --version 2>&1 | grep -qi open && mpiflags+=(--allow-run-as-root)
    for c in ${configs//,/ }; do
        flags=$(config_flags "$c" | sed 's/-b 1$/-b 2/')
        for np in 1 2; do
            out=$(mpirun "${mpiflags[@]}" -np "$np" "$TRAIN_BENCH" $flags -t 1 -n "$steps" -w "$warmup" --json 2>"$tmp/err") ||
                { cat "$tmp/err" >&2; exit 1; }
            echo "$out" | tag "{\"config\": \"$c\", \"engine\": \"mpi-np$np\"}" >>"$res"
            echo "  gemma.c mpirun -np $np $c: $(echo "$out" | grep -o '"tok_s": [0-9.]*')" >&2
        done
    done
elif [ "$mpi" = 1 ]; then
    echo "train_speed: no MPI line ($TRAIN_BENCH is not an MPI build, or no mpirun)" >&2
fi

"$PYTHON" - "$res" "$load_start" "$load_end" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def best(cfg, eng, t=None):
    r = [x for x in rows if x["config"] == cfg and x["engine"] == eng and (t is None or x["threads"] == t)]
    return max(r, key=lambda x: x["tok_s"]) if r else None
cfgs = list(dict.fromkeys(x["config"] for x in rows))
ths = sorted({x["threads"] for x in rows if x["engine"] == "gemma.c"})
sysb = next((x for x in rows if x["engine"] == "torch-system"), None)
obb = next((x for x in rows if x["engine"] == "torch-openblas"), None)
gm = next(x for x in rows if x["engine"] == "gemma.c")
print(f"\nload average {sys.argv[2]} at the start of the timed runs, {sys.argv[3]} at the end; "
      f"torch {(sysb or obb or {}).get('torch', '?')} (OMP_WAIT_POLICY {(sysb or obb or {}).get('omp_wait_policy', '?')}); "
      f"steps: {gm['warmup']} warm-up + median of {gm['steps']}\n")
head = "| config | params | batch | threads | gemma.c tok/s |"
sep = "|---|---|---|---|---|"
if sysb:
    head += f" torch ({sysb['blas']}) tok/s | ratio |"; sep += "---|---|"
if obb:
    head += " torch (OpenBLAS) tok/s | ratio |"; sep += "---|---|"
head += " peak RSS gemma.c / torch |"; sep += "---|"
print(head); print(sep)
for c in cfgs:
    for t in ths:
        g = best(c, "gemma.c", t)
        if not g:
            continue
        line = f"| {c} (d {g['d']}, {g['layers']} layers) | {g['params'] / 1e6:.1f} M | {g['batch']}×{g['seq']} | {t} | {g['tok_s']:.1f} |"
        rss_t = None
        for eng, on in (("torch-system", sysb), ("torch-openblas", obb)):
            if not on:
                continue
            x = best(c, eng, t)
            line += f" {x['tok_s']:.1f} | {g['tok_s'] / x['tok_s']:.2f} |" if x else " – | – |"
            if x:
                rss_t = x["peak_rss_mib"]
        line += f" {g['peak_rss_mib']:.0f} / {rss_t:.0f} MiB |" if rss_t else f" {g['peak_rss_mib']:.0f} MiB / – |"
        print(line)
mpi = [x for x in rows if x["engine"].startswith("mpi-")]
if mpi:
    print("\n| config | batch | np 1 × 1 thread tok/s | np 2 × 1 thread tok/s | speed-up |\n|---|---|---|---|---|")
    for c in cfgs:
        a, b = best(c, "mpi-np1"), best(c, "mpi-np2")
        if a and b:
            print(f"| {c} | {a['batch']}×{a['seq']} | {a['tok_s']:.1f} | {b['tok_s']:.1f} | {b['tok_s'] / a['tok_s']:.2f} |")
for x in rows:
    if x["engine"] == "check":
        print(f"\nloss check {x['config']}: {x['line']}", end="")
print()
EOF
