"""The study configs resnas ships (package data: installed as `resnas.shipped.studies`)."""
