"""GPT-2 124M on OpenWebText, the paper's setup: LionAR + the RRC correction (Figure 5.1).

LionAR with the SNR-based correction that bounds the relative representation change (Figure 5, panel
1). It estimates the gradient SNR from the micro-batches: train.grad_accum_steps >= 2.

The setup (model, 480 x 1024-token batches, 5000 steps, trapezoid schedule with a 50 % cooldown,
no warmup by default) is shared by every gpt2_124m* config; see warmup_jax.configs._paper.
Data: nanoGPT-style OpenWebText uint16 train.bin / val.bin in data.path (experiments/README.md,
"Paper scale", shows how to make them); nothing is downloaded here.

Launch:   warmup-jax train --config gpt2_124m_lion_ar_rrc --set data.path=/data/openwebtext
Add --set optim.warmup_steps=250 for a 5 % warmup. On 8 GPUs of one host, add
--set train.grad_accum_steps=10 (micro-batches of 48). On a TPU v4-32
(4 hosts; data and out_dir on a filesystem every host mounts at the same path):
  gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all --command="cd warmup_jax && \\
      warmup-jax train --config gpt2_124m_lion_ar_rrc --distributed --set data.path=/mnt/shared/openwebtext \\
      --set train.grad_accum_steps=10 --set train.out_dir=/mnt/shared/runs/gpt2_124m_lion_ar_rrc"
Expected: 2.1e18 FLOP: ~1.5 h on one H100/H200, ~12 min on 8, ~20 min on a v4-32 at 40 % MFU
          (the first log lines print the measured MFU). On a 2-core CPU, a smoke test only:
          --set train.steps=2 --set train.batch_size=1 --set train.grad_accum_steps=1.
"""

from warmup_jax.configs._paper import paper_config


def get_config():
    return paper_config("lion_ar_rrc")
