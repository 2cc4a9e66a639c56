#!/usr/bin/env python3
# Goldens for fisedit's image to image (issue 14 item 5): diffusers' StableDiffusionImg2ImgPipeline on
# the tiny SD 1.5 reference model, float32 on the CPU, TF32 off, from a small input image made here
# deterministically (a 64x64 gradient), for a few samplers and strengths.
#
# Writes tests/data/img2img-golden.safetensors (float32 tensors) and tests/data/img2img-golden.json
# (per case: prompt, seed, steps, strength, CFG, sampler and the exact scheduler class and config
# diffusers ran), which tests/test_img2img.cpp compares against (it skips, saying so, while they are
# absent). Keys per case <name>:
#   img2img.<name>.init_latents   the latents the first denoising step starts from: the pipeline's own
#                                 prepare_latents (latent_dist.sample(generator) * scaling_factor, then
#                                 scheduler.add_noise with the generator's next draw), NCHW
#   img2img.<name>.final_latents  the latents after the last step (output_type="latent"), NCHW
#   img2img.<name>.image          the image as diffusers returns it (output_type="np": HWC, [0, 1])
# plus img2img.init_image (HWC, float32 0..255: the input, exact 8-bit values) and img2img.latent_mean
# (vae.encode(image).latent_dist.mean * scaling_factor).
#
# Usage (GPU machine or any machine with torch + transformers; diffusers as source is enough):
#   PYTHONPATH=/path/to/diffusers/src python3 app/tools/img2img_golden.py \
#       --model ../shared/reference/tiny-sd15/model --out tests/data
import argparse
import inspect
import json
import os

import numpy as np
import torch

CASES = [
    # name, sampler, diffusers class, extra config, steps, strength, seed, cfg, prompt, negative
    ("ddim_s060", "ddim", "DDIMScheduler", {}, 8, 0.6, 21, 7.5, "a photo of a cat", ""),
    ("ddim_s100", "ddim", "DDIMScheduler", {}, 5, 1.0, 22, 7.5, "a photo of a cat", ""),
    ("dpmpp2m_s075", "dpmpp2m", "DPMSolverMultistepScheduler", {}, 8, 0.75, 23, 6.0, "a red car in the snow", "blurry"),
    ("euler_a_s050", "euler_a", "EulerAncestralDiscreteScheduler", {}, 6, 0.5, 24, 7.0, "a lighthouse at night", ""),
    ("euler_s070", "euler", "EulerDiscreteScheduler", {}, 10, 0.7, 25, 7.5, "a photo of a dog", ""),
]


def gradient_image(size=64):
    """A deterministic RGB test picture: two ramps and a diagonal, with a square in the middle."""
    y, x = np.mgrid[0:size, 0:size]
    r = (x * 255 // (size - 1)).astype(np.uint8)
    g = (y * 255 // (size - 1)).astype(np.uint8)
    b = ((x + y) * 255 // (2 * size - 2)).astype(np.uint8)
    img = np.stack([r, g, b], axis=-1)
    q = size // 4
    img[q:3 * q, q:3 * q] = [200, 40, 90]
    return img


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=os.path.join(os.path.dirname(__file__), "../../../shared/reference/tiny-sd15/model"))
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/data"))
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import diffusers
    from diffusers import StableDiffusionImg2ImgPipeline
    from PIL import Image
    from safetensors.torch import save_file

    pipe = StableDiffusionImg2ImgPipeline.from_pretrained(args.model, torch_dtype=torch.float32, safety_checker=None,
                                                          requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    base_config = dict(pipe.scheduler.config)
    image_np = gradient_image()
    image = Image.fromarray(image_np)

    tensors = {"img2img.init_image": torch.from_numpy(image_np.astype(np.float32)).contiguous()}
    with torch.no_grad():
        pixels = pipe.image_processor.preprocess(image).to(torch.float32)
        mean = pipe.vae.encode(pixels).latent_dist.mean * pipe.vae.config.scaling_factor
    tensors["img2img.latent_mean"] = mean.contiguous()

    meta = {"diffusers": diffusers.__version__, "torch": torch.__version__, "cases": {}}
    for name, sampler, cls_name, extra, steps, strength, seed, cfg, prompt, negative in CASES:
        cls = getattr(diffusers, cls_name)
        pipe.scheduler = cls.from_config(base_config, **extra)
        config = {k: v for k, v in dict(pipe.scheduler.config).items() if not k.startswith("_")}
        kwargs = dict(prompt=prompt, negative_prompt=negative, image=image, strength=strength,
                      num_inference_steps=steps, guidance_scale=cfg)
        with torch.no_grad():
            final = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), output_type="latent").images
            out = pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(seed), output_type="np").images
            # The start latents, by the pipeline's own steps 5 and 6 with a fresh generator.
            pipe.scheduler.set_timesteps(steps)
            timesteps, _ = pipe.get_timesteps(steps, strength, "cpu")
            params = inspect.signature(pipe.prepare_latents).parameters
            prep = dict(image=pixels, timestep=timesteps[:1].repeat(1), batch_size=1, num_images_per_prompt=1,
                        dtype=torch.float32, device=torch.device("cpu"),
                        generator=torch.Generator("cpu").manual_seed(seed))
            init = pipe.prepare_latents(**{k: v for k, v in prep.items() if k in params})
        tensors[f"img2img.{name}.init_latents"] = init.contiguous()
        tensors[f"img2img.{name}.final_latents"] = final.contiguous()
        tensors[f"img2img.{name}.image"] = torch.from_numpy(np.ascontiguousarray(out[0])).to(torch.float32)
        meta["cases"][name] = {
            "prompt": prompt, "negative_prompt": negative, "seed": seed, "steps": steps, "strength": strength,
            "guidance_scale": cfg, "width": image_np.shape[1], "height": image_np.shape[0], "scheduler": sampler,
            "scheduler_class": cls_name, "scheduler_config": config,
            "start_step": steps - min(int(steps * strength), steps),
            "timesteps": [float(t) for t in timesteps],
        }
        print(f"{name}: {len(timesteps)} of {steps} steps from t={float(timesteps[0])}")

    os.makedirs(args.out, exist_ok=True)
    save_file(tensors, os.path.join(args.out, "img2img-golden.safetensors"))
    # JSON cannot spell -Infinity (DPM-Solver's lambda_min_clipped default): written as null.
    text = json.dumps(meta, indent=1, default=str).replace("-Infinity", "null").replace("Infinity", "null")
    with open(os.path.join(args.out, "img2img-golden.json"), "w") as f:
        f.write(text + "\n")
    print("wrote", os.path.join(args.out, "img2img-golden.safetensors"))


if __name__ == "__main__":
    main()
