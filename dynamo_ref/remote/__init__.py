"""Clusters on real hosts over SSH: the control layer (``ssh``) and deployment (``deploy``)."""
