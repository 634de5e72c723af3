"""Diffusion guidance for unseen views: SDS and Ref-SDS with region-aware reference attention.

- ``loading``: SD 1.5 parts from a local diffusers folder (fp16 on CUDA, fp32 on CPU).
- ``prompts``: caption clean-up, view suffixes, negative prompt, cached embeddings.
- ``sds``: timestep sampling, forward noising, CFG, w(t), the SDS surrogate loss (pure maths).
- ``regions``: reference/render region masks and token grids (method.md §7.1).
- ``ref_attention``: the attention processors, reference bank and region bias (method.md §6.2, §7.2).
- ``refsds``: ``DiffusionGuidance``, what the trainer calls. ``build``: ``build_guidance``.
- ``clip_loss``, ``multistep``, ``lpips_vgg``: the CLIP terms and the multi-step-denoise LPIPS term.

Nothing here is imported by the CLI at start-up (torch and diffusers load lazily).
"""
