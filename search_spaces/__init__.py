"""The search spaces resnas ships (package data: installed as `resnas.shipped.spaces`)."""
