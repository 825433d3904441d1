print("guidon-bench: not yet")
