#!/usr/bin/env python3
# The PyTorch reference for fisedit-bench: diffusers' U-Net step and VAE decode, eager and compiled.
#
# Times the same architectures fisedit-bench builds (`--arch sd2-768`, `sd15-512`, `sd2-512`: random
# weights, fp16, channels-last) on the same inputs: a U-Net call of CFG batch 2 and a VAE decode of one
# latent. Each is timed eager and with torch.compile(mode="reduce-overhead") (CUDA graphs), with
# CUDA events, median of --repeat runs after warm-up, and written as JSON (one file for all archs).
# With --steps N it also times an N-step generation loop (U-Net + CFG + an Euler update on the device,
# then the decode) eager and compiled, the same work as fisedit-bench's `generation` stage.
#
# diffusers is a library used as a library: it is not installed on the GPU machine and is never
# committed here; carry its source (src/diffusers of a checkout) in an ignored folder and point
# PYTHONPATH at it. See docs/benchmarks.md for the command of each recorded run.
import argparse
import json
import statistics
import sys
import time

import torch

ARCHS = {
    # name: (U-Net config, image side)
    "sd15-512": (dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                      use_linear_projection=False), 512),
    "sd2-512": (dict(sample_size=64, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
                     use_linear_projection=True), 512),
    "sd2-768": (dict(sample_size=96, cross_attention_dim=1024, attention_head_dim=[5, 10, 20, 20],
                     use_linear_projection=True), 768),
}
COMMON_UNET = dict(in_channels=4, out_channels=4, layers_per_block=2, norm_num_groups=32,
                   block_out_channels=[320, 640, 1280, 1280],
                   down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                   up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32,
           block_out_channels=[128, 256, 512, 512],
           down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)


def time_ms(fn, repeat, warmup):
    """Median milliseconds of fn() over `repeat` runs (CUDA events), after `warmup` runs."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeat):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return {"median_ms": statistics.median(times), "min_ms": min(times), "runs": repeat}


def bench_arch(name, args):
    from diffusers import AutoencoderKL, UNet2DConditionModel

    unet_cfg, side = ARCHS[name]
    dev, dt = torch.device("cuda"), torch.float16
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**COMMON_UNET, **unet_cfg).to(dev, dt).eval()
    unet = unet.to(memory_format=torch.channels_last)
    vae = AutoencoderKL(**VAE, sample_size=side).to(dev, dt).eval().to(memory_format=torch.channels_last)
    h = side // 8
    latents = torch.randn(2, 4, h, h, device=dev, dtype=dt).to(memory_format=torch.channels_last)
    context = torch.randn(2, 77, unet_cfg["cross_attention_dim"], device=dev, dtype=dt)
    t = torch.tensor([500.0, 500.0], device=dev)
    one_latent = torch.randn(1, 4, h, h, device=dev, dtype=dt).to(memory_format=torch.channels_last)

    result = {"arch": name, "image": side, "params_unet": sum(p.numel() for p in unet.parameters())}

    def unet_call(model):
        return lambda: model(latents, t, encoder_hidden_states=context, return_dict=False)[0]

    def vae_call(model):
        return lambda: model(one_latent, return_dict=False)[0]

    with torch.inference_mode():
        result["unet_eager"] = time_ms(unet_call(unet), args.repeat, args.warmup)
        result["vae_decode_eager"] = time_ms(vae_call(vae.decode), args.repeat, args.warmup)
        if args.steps:
            result["generation_eager"] = time_ms(generation(unet, vae.decode, latents, context, args.steps),
                                                 max(3, args.repeat // 4), 1)
        if not args.no_compile:
            t0 = time.perf_counter()
            unet_c = torch.compile(unet, mode="reduce-overhead", fullgraph=True)
            decode_c = torch.compile(vae.decode, mode="reduce-overhead", fullgraph=True)
            result["unet_compiled"] = time_ms(unet_call(unet_c), args.repeat, args.warmup + 3)
            result["vae_decode_compiled"] = time_ms(vae_call(decode_c), args.repeat, args.warmup + 3)
            if args.steps:
                result["generation_compiled"] = time_ms(generation(unet_c, decode_c, latents, context, args.steps),
                                                        max(3, args.repeat // 4), 2)
            result["compile_s"] = time.perf_counter() - t0
    del unet, vae
    torch.cuda.empty_cache()
    return result


def generation(unet, decode, latents0, context, steps):
    """An N-step CFG loop with an Euler update (sigmas of a linear schedule), then a decode."""
    sigmas = torch.linspace(14.6, 0.0, steps + 1, device=latents0.device).tolist()
    timesteps = torch.linspace(999.0, 0.0, steps, device=latents0.device)

    def run():
        x = latents0[:1] * sigmas[0]
        for i in range(steps):
            inp = torch.cat([x, x]).to(memory_format=torch.channels_last)
            eps = unet(inp, timesteps[i].expand(2), encoder_hidden_states=context, return_dict=False)[0]
            uncond, cond = eps.chunk(2)
            eps = uncond + 7.5 * (cond - uncond)
            x = x + eps * (sigmas[i + 1] - sigmas[i])
        return decode(x / 0.18215, return_dict=False)[0]

    return run


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--arch", nargs="+", default=["sd2-768", "sd15-512"], choices=sorted(ARCHS))
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=0, help="also time an N-step generation loop")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--out", default="-", help="JSON report (default: stdout)")
    args = p.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_torch.py: no CUDA device")
    torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = True
    import diffusers

    report = {
        "tool": "app/bench/bench_torch.py",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "settings": vars(args),
        "results": [],
    }
    for name in args.arch:
        r = bench_arch(name, args)
        print(json.dumps(r), file=sys.stderr)
        report["results"].append(r)
    text = json.dumps(report, indent=2)
    if args.out == "-":
        print(text)
    else:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
