#!/usr/bin/env python3
"""Trains fisedit's built-in toy-world model on the GPU machine and exports it as a diffusers folder.

Stable Diffusion's recipe at toy scale: an AutoencoderKL (4 latent channels, 8x down-sampling) trained
on the world's images, its scaling_factor set from the trained latents' spread; then a CLIP text
encoder and a UNet2DConditionModel trained together from scratch on the latents (epsilon prediction,
SD's scaled-linear betas, the prompt dropped to "" for 10% of samples so classifier-free guidance works,
min-SNR loss weighting, an EMA of the weights is what gets exported). The images come from the world
generator (engine/toyworld, built as the static tool fisedit-toyworld-data), streamed over a pipe.

Training is split over calls of at most ten minutes (the device tool's limit): each call trains for
--minutes, checkpoints everything under --run, and exports the EMA model, so a call that runs out of
time still leaves a usable model. The learning rate follows one cosine over --unet-minutes of U-Net
training in all, wherever the calls split it.

    python3 train.py --run runs/toyworld --minutes 9      # first call: data, VAE, U-Net part 1
    python3 train.py --run runs/toyworld --minutes 9      # later calls: resume the U-Net
    python3 train.py --run runs/toyworld --smoke          # every stage for a few steps

The exported folder is resources/models/toyworld/ once checked (README.md here says how).
"""
import argparse
import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
IMAGE = 256
IMAGE_BYTES = IMAGE * IMAGE * 3
RECORD = IMAGE_BYTES + 256
MAX_TOKENS = 77

# The architecture: engine/models/arch_presets.cpp ("toyworld") holds the same configs.
UNET_CONFIG = dict(
    sample_size=32, in_channels=4, out_channels=4, layers_per_block=1,
    block_out_channels=(64, 96, 128),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    attention_head_dim=(2, 3, 4), cross_attention_dim=128, use_linear_projection=True, norm_num_groups=32)
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=16,
    block_out_channels=(32, 64, 64, 64), sample_size=IMAGE,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
TEXT_CONFIG = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
                   max_position_embeddings=MAX_TOKENS, hidden_act="quick_gelu", projection_dim=128)
SCHEDULER_CONFIG = {
    "_class_name": "DDIMScheduler", "_diffusers_version": "0.40.0.dev0", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False, "num_train_timesteps": 1000,
    "prediction_type": "epsilon", "set_alpha_to_one": False, "steps_offset": 1, "timestep_spacing": "leading",
    "trained_betas": None}


def log(*args):
    print(time.strftime("%H:%M:%S"), *args, flush=True)


# ---- Tokens ------------------------------------------------------------------------------------------

class Tokens:
    """The grammar's prompts as CLIP ids. Every grammar word is one token of the vocabulary (see
    make_tokenizer.py), so a prompt's ids are its words' ids; anything else is refused here, since the
    training data never holds it."""

    def __init__(self, tokenizer_dir):
        self.vocab = json.loads((Path(tokenizer_dir) / "vocab.json").read_text(encoding="utf-8"))
        self.bos = self.vocab["<|startoftext|>"]
        self.eos = self.vocab["<|endoftext|>"]

    def encode(self, prompt):
        ids = [self.bos]
        for word in re.findall(r"[a-z]+|,", prompt):
            ids.append(self.vocab[word + "</w>"])
        ids.append(self.eos)
        assert len(ids) <= MAX_TOKENS
        return ids + [self.eos] * (MAX_TOKENS - len(ids))


# ---- Data --------------------------------------------------------------------------------------------

class WorldStream(threading.Thread):
    """Reads `count` records of the world generator into host memory in the background, so the VAE can
    train on the first images while the rest arrive."""

    def __init__(self, tool, seed, count, threads):
        super().__init__(daemon=True)
        self.tool, self.seed, self.count, self.threads = tool, seed, count, threads
        self.images = np.empty((count, IMAGE_BYTES), np.uint8)
        self.prompts = [None] * count
        self.filled = 0
        self.error = None

    def run(self):
        try:
            cmd = [self.tool, "--seed", str(self.seed), "--count", str(self.count), "--threads", str(self.threads)]
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, bufsize=0)
            chunk = 1024
            buf = bytearray(RECORD * chunk)
            i = 0
            while i < self.count:
                n = min(chunk, self.count - i)
                view = memoryview(buf)[: n * RECORD]
                got = 0
                while got < len(view):
                    r = proc.stdout.readinto(view[got:])
                    if not r:
                        raise RuntimeError(f"world generator ended after {i} records")
                    got += r
                a = np.frombuffer(view, np.uint8).reshape(n, RECORD)
                self.images[i: i + n] = a[:, :IMAGE_BYTES]
                for k in range(n):
                    self.prompts[i + k] = bytes(a[k, IMAGE_BYTES:]).split(b"\0", 1)[0].decode("ascii")
                i += n
                self.filled = i
            if proc.wait() != 0:
                raise RuntimeError(f"world generator exited with {proc.returncode}")
        except Exception as e:  # reported by the trainer's thread
            self.error = e

    def wait_for(self, n):
        while self.filled < n:
            if self.error:
                raise self.error
            time.sleep(0.05)

    def batch(self, indices, device):
        x = torch.from_numpy(self.images[indices]).to(device, non_blocking=True)
        return x.view(-1, IMAGE, IMAGE, 3).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


# ---- Models ------------------------------------------------------------------------------------------

def make_models(tokens):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel
    vae = AutoencoderKL(**VAE_CONFIG)
    unet = UNet2DConditionModel(**UNET_CONFIG)
    text_config = CLIPTextConfig(vocab_size=len(tokens.vocab), bos_token_id=tokens.bos, eos_token_id=tokens.eos,
                                 pad_token_id=tokens.eos, **TEXT_CONFIG)
    text = CLIPTextModel(text_config)
    return vae, unet, text


def count(module):
    return sum(p.numel() for p in module.parameters())


class Ema:
    def __init__(self, modules):
        self.params = [p for m in modules for p in m.parameters()]
        self.shadow = [p.detach().clone().float() for p in self.params]

    @torch.no_grad()
    def update(self, step, decay=0.999):
        d = min(decay, (1 + step) / (10 + step))
        torch._foreach_lerp_(self.shadow, [p.detach().float() for p in self.params], 1 - d)

    @torch.no_grad()
    def swap(self):
        """Puts the EMA weights in the models (and the trained ones in the shadow); call again to undo."""
        for p, s in zip(self.params, self.shadow):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


# ---- Stages ------------------------------------------------------------------------------------------

def train_vae(vae, stream, seconds, device, batch, history):
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=4e-4, betas=(0.9, 0.99), weight_decay=0.0, fused=True)
    stream.wait_for(2048)
    start, step = time.time(), 0
    while time.time() - start < seconds:
        frac = (time.time() - start) / seconds
        for g in opt.param_groups:
            g["lr"] = 4e-4 * min(1.0, (step + 1) / 200) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        idx = np.sort(np.random.randint(0, stream.filled, batch))
        x = stream.batch(idx, device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            posterior = vae.encode(x).latent_dist
            z = posterior.sample()
            rec = vae.decode(z).sample
        rec = rec.float()
        l1 = (rec - x).abs().mean()
        mse = F.mse_loss(rec, x)
        # SD's VAE weighs the KL term 1e-6 against a per-pixel reconstruction sum: the same ratio here.
        kl = posterior.kl().float().mean() / (IMAGE * IMAGE * 3)
        loss = l1 + mse + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 200 == 0:
            history.append({"stage": "vae", "step": step, "seconds": round(time.time() - start, 1),
                            "l1": l1.item(), "mse": mse.item(), "kl": kl.item()})
            log(f"vae step {step} l1 {l1.item():.4f} mse {mse.item():.5f} kl {kl.item():.3g} data {stream.filled}")
        step += 1
    vae.eval()
    log(f"vae: {step} steps of {batch} in {time.time() - start:.0f} s")
    return step


@torch.no_grad()
def encode_all(vae, stream, device, scale=None):
    """Latents of every streamed image (sampled, as SD trains on), times the scaling factor; the factor
    is 1 / std of the first 4096 when not given."""
    stream.wait_for(stream.count)
    if stream.error:
        raise stream.error
    chunks = []
    for i in range(0, stream.count, 512):
        x = stream.batch(np.arange(i, min(i + 512, stream.count)), device)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            z = vae.encode(x).latent_dist.sample()
        chunks.append(z.half())
    if scale is None:
        scale = 1.0 / torch.cat(chunks[:8]).float().std().item()
        log(f"latent std {1 / scale:.4f}: scaling_factor {scale:.5f}")
    return torch.cat(chunks), scale


def min_snr_weight(alphas_cumprod, t, gamma=5.0):
    snr = alphas_cumprod[t] / (1 - alphas_cumprod[t])
    return torch.clamp(snr, max=gamma) / snr


def train_unet(state, seconds, total_seconds, device, batch, history):
    unet, text, ema, opt = state["unet"], state["text"], state["ema"], state["opt"]
    latents, ids, empty = state["latents"], state["ids"], state["empty_ids"]
    ac = state["alphas_cumprod"]
    unet.train()
    text.train()
    start = time.time()
    step = state["step"]
    trained = state["unet_seconds"]
    n = latents.shape[0]
    loss_sum, loss_n = 0.0, 0
    while time.time() - start < seconds:
        frac = min(1.0, (trained + time.time() - start) / total_seconds)
        lr = 3e-4 * min(1.0, (step + 1) / 500) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(0, n, (batch,), device=device)
        x0 = latents[idx].float()
        tok = ids[idx]
        drop = torch.rand(batch, device=device) < 0.1
        tok = torch.where(drop[:, None], empty[None, :], tok)
        t = torch.randint(0, 1000, (batch,), device=device)
        noise = torch.randn_like(x0)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        with torch.autocast("cuda", dtype=torch.bfloat16):
            ctx = text(input_ids=tok).last_hidden_state
            pred = unet(xt, t, encoder_hidden_states=ctx).sample
        per = ((pred.float() - noise) ** 2).mean(dim=(1, 2, 3))
        loss = (per * min_snr_weight(ac, t)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(unet.parameters()) + list(text.parameters()), 1.0)
        opt.step()
        ema.update(step)
        loss_sum += per.detach().mean()
        loss_n += 1
        if step % 250 == 0:
            mean = (loss_sum / loss_n).item()
            loss_sum, loss_n = 0.0, 0
            history.append({"stage": "unet", "step": step, "seconds": round(trained + time.time() - start, 1),
                            "mse": mean, "lr": lr})
            log(f"unet step {step} mse {mean:.4f} lr {lr:.2e}")
        step += 1
    state["step"] = step
    state["unet_seconds"] = trained + time.time() - start
    log(f"unet: now {step} steps, {state['unet_seconds']:.0f} s of {total_seconds:.0f}")


# ---- Export and preview ------------------------------------------------------------------------------

def export(state, tokenizer_dir, out_dir):
    unet, text, vae, ema = state["unet"], state["text"], state["vae"], state["ema"]
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    ema.swap()
    try:
        for name, module in (("unet", unet), ("text_encoder", text), ("vae", vae)):
            copy.deepcopy(module).to(torch.float16).save_pretrained(out_dir / name, safe_serialization=True)
    finally:
        ema.swap()
    vae_cfg = json.loads((out_dir / "vae" / "config.json").read_text())
    vae_cfg["scaling_factor"] = state["scale"]
    (out_dir / "vae" / "config.json").write_text(json.dumps(vae_cfg, indent=2, sort_keys=True) + "\n")
    (out_dir / "scheduler").mkdir(parents=True)
    (out_dir / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG, indent=2) + "\n")
    shutil.copytree(tokenizer_dir, out_dir / "tokenizer")
    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.40.0.dev0",
             "feature_extractor": [None, None], "image_encoder": [None, None], "requires_safety_checker": False,
             "safety_checker": [None, None], "scheduler": ["diffusers", "DDIMScheduler"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"]}
    (out_dir / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    size = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    log(f"exported {out_dir}: {size / 1e6:.2f} MB")
    return size


@torch.no_grad()
def preview(state, tokens, prompts, path, device, steps=20, cfg=7.5, seed=0):
    """DDIM with classifier-free guidance, as the engine runs it, on the EMA weights: a contact sheet."""
    from PIL import Image
    unet, text, vae, ema, ac = state["unet"], state["text"], state["vae"], state["ema"], state["alphas_cumprod"]
    ema.swap()
    unet.eval()
    text.eval()
    try:
        g = torch.Generator(device="cpu").manual_seed(seed)
        n = len(prompts)
        x = torch.randn((n, 4, 32, 32), generator=g).to(device)
        cond = text(input_ids=torch.tensor([tokens.encode(p) for p in prompts], device=device)).last_hidden_state
        uncond = text(input_ids=torch.tensor([tokens.encode("")] * n, device=device)).last_hidden_state
        ts = list(range(1, 1000, 1000 // steps))[::-1]
        for i, t in enumerate(ts):
            tt = torch.full((2 * n,), t, device=device)
            eps = unet(torch.cat([x, x]), tt, encoder_hidden_states=torch.cat([uncond, cond])).sample
            e_u, e_c = eps.chunk(2)
            e = e_u + cfg * (e_c - e_u)
            a = ac[t]
            a_prev = ac[ts[i + 1]] if i + 1 < len(ts) else ac[0]
            x0 = (x - (1 - a).sqrt() * e) / a.sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * e
        img = vae.decode(x / state["scale"]).sample.clamp(-1, 1)
        img = ((img + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        cols = 4
        rows = (n + cols - 1) // cols
        sheet = np.zeros((rows * IMAGE, cols * IMAGE, 3), np.uint8)
        for k in range(n):
            sheet[(k // cols) * IMAGE:(k // cols + 1) * IMAGE, (k % cols) * IMAGE:(k % cols + 1) * IMAGE] = img[k]
        Image.fromarray(sheet).save(path)
    finally:
        ema.swap()
        unet.train()
        text.train()


def vae_sheet(vae, stream, path, device):
    from PIL import Image
    with torch.no_grad():
        x = stream.batch(np.arange(8), device)
        rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    both = torch.cat([x, rec])
    img = ((both + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    sheet = np.concatenate([np.concatenate(list(img[:8]), axis=1), np.concatenate(list(img[8:]), axis=1)], axis=0)
    Image.fromarray(sheet).save(path)


PREVIEW_PROMPTS = [
    "a red circle at the top left and a big blue house at the bottom right, sand background",
    "a yellow star at the center, night background",
    "a small green tree at the left and a white boat at the right, sea background",
    "a purple heart at the top, snow background",
    "a big orange square at the center, grass background",
    "a pink triangle at the bottom left and a black house at the top right, sky background",
    "a brown boat at the bottom, sea background",
    "a blue circle at the top left and a red circle at the top and a green circle at the top right, snow background",
]


# ---- Main --------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/toyworld", help="checkpoint and export folder")
    ap.add_argument("--tool", default=".carry/fisedit-toyworld-data")
    ap.add_argument("--tokenizer", default=str(HERE.parent.parent / "resources/models/toyworld/tokenizer"),
                    help="from make_tokenizer.py")
    ap.add_argument("--seed", type=int, default=20261206)
    ap.add_argument("--images", type=int, default=250_000, help="training images (held-out: the benchmark's seeds)")
    ap.add_argument("--minutes", type=float, default=9.0, help="this call's training time")
    ap.add_argument("--vae-minutes", type=float, default=3.0)
    ap.add_argument("--unet-minutes", type=float, default=12.0, help="U-Net training time over all calls")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--vae-batch", type=int, default=32)
    ap.add_argument("--out", default=os.environ.get("OUT", "."), help="where the tarred model and sheets go")
    ap.add_argument("--smoke", action="store_true", help="every stage for a few seconds")
    args = ap.parse_args()
    t_call = time.time()
    if args.smoke:
        args.images, args.vae_minutes, args.unet_minutes, args.minutes = 3000, 0.1, 0.2, 0.6
    torch.manual_seed(args.seed)
    np.random.seed(args.seed % 2**32)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = "cuda"
    run = Path(args.run)
    run.mkdir(parents=True, exist_ok=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokens = Tokens(args.tokenizer)
    history_file = run / "history.json"
    history = json.loads(history_file.read_text()) if history_file.exists() else []

    vae, unet, text = make_models(tokens)
    log(f"parameters: unet {count(unet):,} text {count(text):,} vae {count(vae):,}")
    vae, unet, text = vae.to(device), unet.to(device), text.to(device)
    ckpt_file = run / "checkpoint.pt"
    data_file = run / "latents.pt"
    state = {"unet": unet, "text": text, "vae": vae}
    ac = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    state["alphas_cumprod"] = torch.cumprod(1 - ac, 0).float().to(device)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=3e-4, betas=(0.9, 0.99), weight_decay=0.01, fused=True)
    ema = Ema([unet, text])
    state.update(opt=opt, ema=ema, step=0, unet_seconds=0.0)

    if ckpt_file.exists() and data_file.exists():
        ck = torch.load(ckpt_file, map_location=device, weights_only=False)
        vae.load_state_dict(ck["vae"])
        unet.load_state_dict(ck["unet"])
        text.load_state_dict(ck["text"])
        opt.load_state_dict(ck["opt"])
        for s, v in zip(ema.shadow, ck["ema"]):
            s.copy_(v)
        state.update(step=ck["step"], unet_seconds=ck["unet_seconds"], scale=ck["scale"])
        data = torch.load(data_file, map_location=device)
        state.update(latents=data["latents"], ids=data["ids"])
        vae.eval()
        log(f"resumed at step {state['step']} ({state['unet_seconds']:.0f} s of U-Net training)")
    else:
        stream = WorldStream(args.tool, args.seed, args.images, max(1, (os.cpu_count() or 4) - 2))
        stream.start()
        train_vae(vae, stream, args.vae_minutes * 60, device, args.vae_batch, history)
        vae_sheet(vae, stream, out / "vae-reconstructions.png", device)
        t0 = time.time()
        latents, scale = encode_all(vae, stream, device)
        ids = torch.tensor([tokens.encode(p) for p in stream.prompts], dtype=torch.int64, device=device)
        log(f"encoded {latents.shape[0]} images in {time.time() - t0:.0f} s; latents {tuple(latents.shape)}")
        state.update(latents=latents * scale, ids=ids, scale=scale)
        torch.save({"latents": state["latents"], "ids": ids}, data_file)
        del stream
    state["empty_ids"] = torch.tensor(tokens.encode(""), dtype=torch.int64, device=device)

    remaining = args.minutes * 60 - (time.time() - t_call)
    budget = args.unet_minutes * 60 - state["unet_seconds"]
    # Leave time to checkpoint, export and preview.
    seconds = max(0.0, min(remaining - (5 if args.smoke else 45), budget))
    if seconds > 0:
        train_unet(state, seconds, args.unet_minutes * 60, device, args.batch, history)
    torch.save({"vae": vae.state_dict(), "unet": unet.state_dict(), "text": text.state_dict(),
                "opt": opt.state_dict(), "ema": ema.shadow, "step": state["step"],
                "unet_seconds": state["unet_seconds"], "scale": state["scale"]}, ckpt_file)
    history_file.write_text(json.dumps(history, indent=1) + "\n")
    model_dir = run / "toyworld"
    export(state, args.tokenizer, model_dir)
    subprocess.run(["tar", "cf", str(out / "toyworld-model.tar"), "-C", str(run), "toyworld"], check=True)
    shutil.copy(history_file, out / "history.json")
    preview(state, tokens, PREVIEW_PROMPTS, out / "preview.png", device)
    log(f"call done in {time.time() - t_call:.0f} s")


if __name__ == "__main__":
    main()
