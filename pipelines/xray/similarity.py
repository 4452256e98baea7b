"""xvr's image similarity 'gmncc' from sliding-window statistics, with the X-ray side cached.

gmncc(fixed, moving) = 0.5 x (0.5 NCC + 0.5 NCC_9) + 0.5 x NCC_11(Sobel fixed, Sobel moving),
where NCC is over the whole image and NCC_p is the mean over every p x p window (stride 1, no
padding) of that window's normalised cross-correlation, cov / (sqrt(var + eps) sqrt(var + eps)),
population variances, eps 1e-5, per channel (the two Sobel directions are two channels).
diffdrr's metrics (used by xvr) copy every window out with unfold; here the window means of
x, x^2 and xy come from one average pooling, which gives the same value at a fraction of the
cost, and everything that depends only on the fixed image is computed once.

With a mask (True = image; the X-ray's padding and display shutters left out) the whole-image
NCC is taken over the masked pixels, and the windowed terms average only the windows that lie
wholly inside the mask (for the gradient term, inside the mask shrunk by the Sobel's 1 px), so
nothing outside the mask changes the value. Without one, the value is xvr's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-5  # added to every variance, as in diffdrr's NormalizedCrossCorrelation2d
MNCC_PATCH = 9  # window of the intensity NCC, px
GNCC_PATCH = 11  # window of the gradient NCC, px


def sobel(image: torch.Tensor) -> torch.Tensor:
    """Horizontal and vertical Sobel responses (zero padded): (B, 1, H, W) -> (B, 2, H, W)."""
    gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
    kernels = torch.stack([gx, gx.T])[:, None].to(image)
    return F.conv2d(image, kernels, padding=1)


def sobel_inside(mask: torch.Tensor) -> torch.Tensor:
    """The pixels of a mask (B, 1, H, W) whose 3 x 3 Sobel support lies inside it (the image's
    own border is not a mask border: the Sobel there pads with zeros, as xvr's does)."""
    mask = mask.double() if mask.dtype == torch.bool else mask
    return -F.max_pool2d(-mask, 3, stride=1, padding=1)


def whole_windows(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """1.0 at each patch_size x patch_size window (stride 1, no padding) wholly inside the mask
    (B, 1, H, W), else 0.0; float64."""
    return (F.avg_pool2d(mask.double(), patch_size, stride=1) > 1 - 1e-9).double()


def holds_whole_windows(mask: torch.Tensor) -> bool:
    """Whether a mask (B, 1, H, W) holds, in every image, a whole window of each windowed term:
    the narrowest is the gradient term's 11 px window inside the mask shrunk by the Sobel's
    support (it holds the intensity term's 9 px one)."""
    return bool((whole_windows(sobel_inside(mask), GNCC_PATCH).sum(dim=(-2, -1)) > 0).all())


class GradientMultiscaleNCC(torch.nn.Module):
    """xvr's gmncc against one fixed image (B, 1, H, W); forward(moving) -> (B,), 1 = identical
    up to an affine intensity change. mask (1 or B, 1, H, W) bool: the pixels that count (see
    the module doc); ValueError when it holds no whole 11 px window."""

    def __init__(
        self, fixed: torch.Tensor, eps: float = EPS, mask: torch.Tensor | None = None
    ) -> None:
        super().__init__()
        fixed = fixed.detach()
        inner = None
        if mask is not None:
            mask = mask.to(fixed.device, fixed.dtype).expand_as(fixed)
            if not holds_whole_windows(mask):
                raise ValueError(f"the mask holds no whole {GNCC_PATCH} px window")
            inner = sobel_inside(mask)
        self.whole = _WholeImage(fixed, eps, mask)
        self.windows = _Windows(fixed, MNCC_PATCH, eps, mask)
        self.gradient_windows = _Windows(sobel(fixed), GNCC_PATCH, eps, inner)

    def forward(self, moving: torch.Tensor) -> torch.Tensor:
        intensity = 0.5 * self.whole(moving) + 0.5 * self.windows(moving)
        return 0.5 * intensity + 0.5 * self.gradient_windows(sobel(moving))


class _WholeImage:
    """NCC over the whole image (or the masked pixels) with the fixed image normalised once."""

    def __init__(self, fixed: torch.Tensor, eps: float, mask: torch.Tensor | None) -> None:
        self.eps, self.mask = eps, mask
        self.fixed = _normalise(fixed, eps) if mask is None else _masked_normalise(fixed, mask, eps)

    def __call__(self, moving: torch.Tensor) -> torch.Tensor:
        if self.mask is None:
            return (self.fixed * _normalise(moving, self.eps)).mean(dim=(1, 2, 3))
        product = self.fixed * _masked_normalise(moving, self.mask, self.eps)
        return (product.sum(dim=(-2, -1)) / self.mask.sum(dim=(-2, -1))).mean(dim=1)


class _Windows:
    """Mean windowed NCC with the fixed image's window means and deviations computed once;
    with a mask, the mean over the windows wholly inside it."""

    def __init__(
        self, fixed: torch.Tensor, patch_size: int, eps: float, mask: torch.Tensor | None = None
    ) -> None:
        self.patch_size, self.eps = int(patch_size), eps
        self.fixed = fixed.double()
        self.valid = None
        if mask is not None:
            self.valid = whole_windows(mask, self.patch_size)
            self.count = self.valid.sum(dim=(-2, -1))
        mean, mean_square = self._pool(torch.cat([self.fixed, self.fixed.square()], 1)).chunk(2, 1)
        self.mean = mean
        self.inv_std = ((mean_square - mean * mean).clamp_min(0) + eps).rsqrt()

    def _pool(self, stack: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(stack, self.patch_size, stride=1)

    def __call__(self, moving: torch.Tensor) -> torch.Tensor:
        # float64: window variances are differences of nearly equal means
        moving64 = moving.double()
        stack = torch.cat([moving64, moving64.square(), self.fixed * moving64], dim=1)
        mean, mean_square, mean_product = self._pool(stack).chunk(3, dim=1)
        covariance = mean_product - self.mean * mean
        inv_std = ((mean_square - mean * mean).clamp_min(0) + self.eps).rsqrt()
        ncc = covariance * self.inv_std * inv_std
        if self.valid is None:
            return ncc.mean(dim=(1, 2, 3)).to(moving.dtype)
        inside = (ncc * self.valid).sum(dim=(-2, -1)) / self.count
        return inside.mean(dim=1).to(moving.dtype)


def _normalise(image: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit (population) deviation per image and channel."""
    centred = image - image.mean(dim=(-2, -1), keepdim=True)
    return centred * (centred.square().mean(dim=(-2, -1), keepdim=True) + eps).rsqrt()


def _masked_normalise(image: torch.Tensor, mask: torch.Tensor, eps: float) -> torch.Tensor:
    """Zero mean, unit deviation over the masked pixels, per image and channel; 0 outside."""
    count = mask.sum(dim=(-2, -1), keepdim=True)
    centred = (image - (image * mask).sum(dim=(-2, -1), keepdim=True) / count) * mask
    variance = centred.square().sum(dim=(-2, -1), keepdim=True) / count
    return centred * (variance + eps).rsqrt()
