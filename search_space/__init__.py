"""search_space"""
