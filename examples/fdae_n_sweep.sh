#!/usr/bin/env bash
# Choosing FDAE's number of concepts N without labels (Wu & Zheng, AAAI 2024, Table 1 / Eq. 13):
# train one run per N, score each with self-MIG (and, where the data has ground truth, the FDAE
# protocol's DCI / FactorVAE / MIG), and keep the N with the highest self-MIG.
#
#   bash examples/fdae_n_sweep.sh cpu     # minutes per run: shapes3d_like, N = 2, 4, 6
#   bash examples/fdae_n_sweep.sh paper   # GPU: the paper's MPI3D N-sweep (Table 5), 3 seeds
set -euo pipefail
mode="${1:-cpu}"

if [ "$mode" = cpu ]; then
    out=runs/fdae_n_cpu
    # every run evaluates itself when training ends (FDAE protocol, d_r = 36 // 2N, self_mig included)
    disentkit sweep preset=fdae/shapes3d_like model.num_concepts=2,4,6 train.steps=500 eval.at_end=true \
        seed=0:2 --out "$out"
else
    out=runs/fdae_n_paper
    # the n_sweep presets leave evaluation to the next step: Table 5 scores every N with d_r = 3
    disentkit sweep preset=fdae/n_sweep_2,fdae/n_sweep_4,fdae/n_sweep_6,fdae/n_sweep_8,fdae/n_sweep_10 \
        seed=0:3 --out "$out"
    for run in "$out"/[0-9]*/; do
        disentkit eval "$run" --protocol fdae --group-dims 3
    done
fi

# mean +- std over the seeds per N; self_mig.self_mig is the score to choose N by
disentkit aggregate "$out" --by model.num_concepts --metric self_mig.self_mig --metric self_mig.self_mig_mean \
    --metric dci.disentanglement --metric factor_vae.eval_accuracy --metric mig.discrete_mig --out "$out/summary"
cat "$out/summary/summary.md"
