"""Unfolding: generative posterior sampling (:mod:`.posterior`)."""
