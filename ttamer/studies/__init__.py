"""Studies: plain-Python experiments that turn typed configs into tidy result tables."""
