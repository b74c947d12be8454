"""The four Lianfang services; they never import each other."""
