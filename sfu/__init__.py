"""Selective forwarding unit: forwards RTP from publishers to subscribers without decoding."""
