"""The bad-input corpus of the cluster campaign (tests/cluster/test_campaign.py)."""
