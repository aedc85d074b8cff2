"""Analysis of stored results: pure numpy/pandas, no Ray (runs over a copied results directory)."""
